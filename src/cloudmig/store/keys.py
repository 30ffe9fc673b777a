"""Access keys (secrets stored sealed) and request nonces."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from cloudmig.domain.enums import KeyStatus
from cloudmig.store.records import AccessKeyRecord
from cloudmig.store.tables import access_keys, nonces


def insert_key(engine: Engine, key_id: str, secret_enc: str, description: str, now: datetime) -> None:
    with engine.begin() as c:
        c.execute(
            insert(access_keys).values(
                id=key_id,
                secret_enc=secret_enc,
                status=KeyStatus.ACTIVE.value,
                description=description,
                created_at=now,
            )
        )


def get_key(engine: Engine, key_id: str) -> AccessKeyRecord | None:
    with engine.connect() as c:
        row = c.execute(select(access_keys).where(access_keys.c.id == key_id)).mappings().first()
    if row is None:
        return None
    return AccessKeyRecord(**{**dict(row), "status": KeyStatus(row["status"])})


def list_keys(engine: Engine) -> list[AccessKeyRecord]:
    with engine.connect() as c:
        rows = c.execute(select(access_keys).order_by(access_keys.c.created_at)).mappings().all()
    return [AccessKeyRecord(**{**dict(r), "status": KeyStatus(r["status"])}) for r in rows]


def set_key_status(engine: Engine, key_id: str, status: KeyStatus) -> bool:
    with engine.begin() as c:
        res = c.execute(update(access_keys).where(access_keys.c.id == key_id).values(status=status.value))
    return res.rowcount > 0


def record_nonce(engine: Engine, key_id: str, nonce: str, expires_at: datetime, now: datetime) -> bool:
    """True when the nonce is new for this key; expired nonces are purged on the way."""
    try:
        with engine.begin() as c:
            c.execute(delete(nonces).where(nonces.c.expires_at < now))
            c.execute(insert(nonces).values(access_key_id=key_id, nonce=nonce, expires_at=expires_at))
    except IntegrityError:
        return False
    return True


def nonce_seen(engine: Engine, key_id: str, nonce: str, now: datetime) -> bool:
    """True when the nonce is recorded for this key and not expired (a read: works on a full disk)."""
    with engine.connect() as c:
        row = c.execute(
            select(nonces.c.nonce).where(
                nonces.c.access_key_id == key_id, nonces.c.nonce == nonce, nonces.c.expires_at >= now
            )
        ).first()
    return row is not None
