"""Validation of user-supplied values that end up in connection strings or SQL identifiers."""

from __future__ import annotations

import ipaddress
import re

# A hostname per RFC 1123 (labels of letters, digits, hyphens), or an IP address.
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
# PostgreSQL role names may be almost anything when quoted; cloudmig accepts the unquoted-safe set
# plus a few common punctuation marks, and refuses quotes, semicolons, backslashes and whitespace.
_ACCOUNT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$.@-]{0,62}$")

SOURCE_CATEGORIES = {c.lower(): c for c in ("idcOnVpc", "ecsOnVpc", "internet", "aliyunRDS", "other")}


def valid_host(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        pass
    if len(value) > 253 or not value:
        return False
    # A dotted string of digits that failed to parse as an IP is a typo, not a hostname.
    if re.fullmatch(r"[0-9.]+", value):
        return False
    return all(_HOST_LABEL.match(label) for label in value.rstrip(".").split("."))


def valid_account(value: str) -> bool:
    return bool(_ACCOUNT.match(value))


def normalize_source_category(value: str) -> str | None:
    return SOURCE_CATEGORIES.get(value.strip().lower())


def valid_pem_certificates(text: str) -> bool:
    """One or more PEM X.509 certificates, and nothing that is not one."""
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(text.encode())
    except ValueError:
        return False
    return len(certs) > 0
