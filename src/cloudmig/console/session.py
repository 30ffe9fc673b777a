"""Console sessions: an HMAC-signed cookie naming the access key, with a per-session CSRF token.

The signing key is derived from the service's secret key (the Fernet key that seals secrets at
rest), so sessions survive a restart and die with a key rotation. Every request re-checks that the
access key is still active: revoking a key ends its console sessions too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from cloudmig.secretbox import load_or_create_key
from cloudmig.settings import Settings

SESSION_COOKIE = "cloudmig_session"
LOGIN_CSRF_COOKIE = "cloudmig_login_csrf"
COOKIE_PATH = "/console"


@dataclass(frozen=True)
class Session:
    key_id: str
    csrf: str
    expires: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    def __init__(self, key: bytes, lifetime_seconds: float) -> None:
        self._key = hmac.new(key, b"cloudmig console session v1", hashlib.sha256).digest()
        self.lifetime = lifetime_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionSigner:
        secret = (
            settings.secret_key.encode() if settings.secret_key else load_or_create_key(settings.key_file)
        )
        return cls(secret, settings.console_session_hours * 3600)

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def issue(self, key_id: str, now: float | None = None) -> tuple[str, Session]:
        session = Session(key_id, secrets.token_urlsafe(24), (now or time.time()) + self.lifetime)
        payload = _b64(json.dumps({"k": session.key_id, "c": session.csrf, "e": session.expires}).encode())
        return f"{payload}.{self._mac(payload)}", session

    def verify(self, cookie: str | None, now: float | None = None) -> Session | None:
        if not cookie or cookie.count(".") != 1 or len(cookie) > 4096:
            return None
        payload, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
            session = Session(str(data["k"]), str(data["c"]), float(data["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires < (now or time.time()):
            return None
        return session


def new_token() -> str:
    return secrets.token_urlsafe(24)


def tokens_match(expected: str | None, given: str | None) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
