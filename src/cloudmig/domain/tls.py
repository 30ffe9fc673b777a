"""TLS towards the source: the sslmode a task uses, from its request, the service's defaults and
its SourceCategory."""

from __future__ import annotations

from dataclasses import dataclass

SSL_MODES: tuple[str, ...] = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
INTERNET = "internet"
# A PEM bundle of a few CA certificates fits easily; refuse what is clearly not one.
MAX_ROOT_CERT_CHARS = 64 * 1024


@dataclass(frozen=True)
class SourceTlsRequest:
    """What a task asked for (None: use the defaults), kept in the task's request JSON."""

    sslmode: str | None = None
    root_cert_pem: str | None = None

    def to_json(self) -> dict[str, str]:
        out = {}
        if self.sslmode:
            out["SslMode"] = self.sslmode
        if self.root_cert_pem:
            out["RootCert"] = self.root_cert_pem
        return out

    @classmethod
    def from_json(cls, raw: dict[str, str] | None) -> SourceTlsRequest:
        raw = raw or {}
        return cls(raw.get("SslMode") or None, raw.get("RootCert") or None)


def effective_sslmode(requested: str | None, default: str, category: str, has_root_cert: bool) -> str:
    """The task's request wins, then the service's default; otherwise a source over the internet
    is verified when a CA is known and at least encrypted when not, and the others prefer TLS."""
    if requested:
        return requested
    if default:
        return default
    if category.lower() == INTERNET:
        return "verify-full" if has_root_cert else "require"
    return "prefer"
