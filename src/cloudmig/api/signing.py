"""Request signatures of the RDS OpenAPI, as pure functions.

V1 ("RPC", HMAC-SHA1): every parameter except ``Signature`` is signed; spec §5.1.
V3 (``ACS3-HMAC-SHA256``): a canonical request over method, path, query, the signed headers and the
payload hash; spec §5.2.

Wire details follow the installed SDKs (``alibabacloud_tea_openapi.utils`` and
``aliyunsdkcore.auth.composer.rpc_signature_composer``), which are the judges of compatibility.
Comparing a received signature with a computed one must go through `signatures_equal`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from cloudmig import errors

V1_SIGNATURE_METHOD = "HMAC-SHA1"
V1_SIGNATURE_VERSION = "1.0"
V3_ALGORITHM = "ACS3-HMAC-SHA256"
# Algorithms whose canonical request is hashed with SHA-256 (the SM3 variant is not).
_SHA256_ALGORITHMS = frozenset({"ACS3-HMAC-SHA256", "ACS3-RSA-SHA256"})
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()

_ALGORITHM_RE = re.compile(r"ACS3-[A-Z0-9]+(?:-[A-Z0-9]+)*")
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
_AUTH_FIELDS = ("Credential", "SignedHeaders", "Signature")


def percent_encode(s: str) -> str:
    """RFC 3986 encoding: keep ``A-Z a-z 0-9 - _ . ~``, everything else ``%XX`` of its UTF-8 bytes.

    Same as the SDKs' ``quote(s, safe='~')``. Lone surrogates (no SDK can send them) are encoded
    rather than raising, so the function is total.
    """
    return quote(s, safe="~", encoding="utf-8", errors="surrogatepass")


def _utf8(s: str) -> bytes:
    return s.encode("utf-8", "surrogatepass")


def signatures_equal(received: str, expected: str) -> bool:
    """Constant-time comparison of two signatures (works for any text, unlike str compare_digest)."""
    return hmac.compare_digest(_utf8(received), _utf8(expected))


# ---- V1 -------------------------------------------------------------------------------------------


def v1_canonical_query(params: Mapping[str, str]) -> str:
    """Sorted (by raw key, ordinal), percent-encoded ``k=v`` pairs joined by ``&``; no Signature."""
    pairs = sorted((k, v) for k, v in params.items() if k != "Signature")
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in pairs)


def v1_string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """``METHOD&%2F&percentEncode(CanonicalizedQueryString)``; empty values are kept."""
    return f"{method}&%2F&{percent_encode(v1_canonical_query(params))}"


def v1_sign(secret: str, string_to_sign: str) -> str:
    """Base64 of HMAC-SHA1 with key ``secret + '&'``."""
    digest = hmac.new(_utf8(secret + "&"), _utf8(string_to_sign), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


# ---- V3 -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class V3Authorization:
    """``<algorithm> Credential=<ak>,SignedHeaders=<h1;h2>,Signature=<hex>``, parsed."""

    algorithm: str
    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str


def _incomplete(detail: str) -> errors.IncompleteSignature:
    return errors.IncompleteSignature(f"{errors.IncompleteSignature.default_message} {detail}")


def v3_parse_authorization(value: str) -> V3Authorization:
    """Parse an ``Authorization`` header of the ACS3 family; raise IncompleteSignature if malformed.

    Any ``ACS3-*`` algorithm token is accepted here; which algorithms are verified is the caller's
    business. SignedHeaders names are lower-cased; an empty or repeated name is malformed.
    """
    algorithm, sep, rest = value.strip().partition(" ")
    if not sep or not _ALGORITHM_RE.fullmatch(algorithm):
        raise _incomplete("The Authorization header must start with an ACS3 algorithm name and a space.")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, eq, field_value = part.strip().partition("=")
        if not eq or name not in _AUTH_FIELDS:
            raise _incomplete(
                "The Authorization header must be Credential=...,SignedHeaders=...,Signature=..."
            )
        if name in fields:
            raise _incomplete(f"The Authorization header gives {name} more than once.")
        fields[name] = field_value.strip()
    for name in _AUTH_FIELDS:
        if not fields.get(name):
            raise _incomplete(f"The Authorization header has no {name}.")
    credential, signature = fields["Credential"], fields["Signature"]
    if any(c.isspace() for c in credential) or any(c.isspace() for c in signature):
        raise _incomplete("The Authorization header is malformed.")
    names = tuple(h.strip().lower() for h in fields["SignedHeaders"].split(";"))
    for name in names:
        if not _HEADER_NAME_RE.fullmatch(name):
            raise _incomplete("SignedHeaders must be a ';'-separated list of header names.")
    if len(set(names)) != len(names):
        raise _incomplete("SignedHeaders names a header more than once.")
    return V3Authorization(
        algorithm=algorithm, access_key_id=credential, signed_headers=names, signature=signature
    )


def v3_canonical_query(query: Sequence[tuple[str, str]], *, encode_keys: bool = False) -> str:
    """Sorted ``key=percentEncode(value)`` pairs joined by ``&`` (empty value gives ``key=``).

    The installed tea SDK does not encode keys (`get_canonical_query_string`); the published V3
    description encodes both. ``encode_keys=True`` gives the latter; for plain ASCII keys they agree.
    """
    if encode_keys:
        pairs = sorted((percent_encode(k), percent_encode(v)) for k, v in query)
    else:
        pairs = sorted((k, percent_encode(v)) for k, v in query)
    return "&".join(f"{k}={v}" for k, v in pairs)


def v3_canonical_request(
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    payload_hash: str,
    *,
    encode_keys: bool = False,
) -> str:
    """``METHOD\\nURI\\nCQS\\nCanonicalHeaders\\nSignedHeaders\\nPayloadHash``.

    CanonicalHeaders are built only from the names in ``signed_headers`` (lower-cased, sorted), with
    the received values trimmed; a named header missing from ``headers`` counts as empty (callers
    reject that case before signing).
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    names = sorted({h.lower() for h in signed_headers})
    canonical_headers = "".join(f"{name}:{lowered.get(name, '').strip()}\n" for name in names)
    return "\n".join(
        (
            method,
            path or "/",
            v3_canonical_query(query, encode_keys=encode_keys),
            canonical_headers,
            ";".join(names),
            payload_hash,
        )
    )


def v3_string_to_sign(canonical_request: str, algorithm: str = V3_ALGORITHM) -> str:
    """``<algorithm>\\n<hex SHA-256 of the canonical request>``."""
    if algorithm not in _SHA256_ALGORITHMS:
        raise ValueError(f"unsupported signature algorithm {algorithm!r}")
    return f"{algorithm}\n{hashlib.sha256(_utf8(canonical_request)).hexdigest()}"


def v3_sign(secret: str, string_to_sign: str) -> str:
    """Hex HMAC-SHA256 with key ``secret`` (no ``&``, unlike V1)."""
    return hmac.new(_utf8(secret), _utf8(string_to_sign), hashlib.sha256).hexdigest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
