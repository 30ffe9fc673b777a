"""Access keys: created with a secret shown once, stored sealed, revocable."""

from __future__ import annotations

from dataclasses import dataclass

from cloudmig.domain.enums import KeyStatus
from cloudmig.domain.ids import new_access_key_id, new_access_key_secret
from cloudmig.runtime import AppContext
from cloudmig.store import keys as key_store
from cloudmig.store.records import AccessKeyRecord


@dataclass(frozen=True)
class NewKey:
    access_key_id: str
    access_key_secret: str


@dataclass(frozen=True)
class VerifiableKey:
    secret: str
    active: bool


def create_key(ctx: AppContext, description: str = "") -> NewKey:
    key_id, secret = new_access_key_id(), new_access_key_secret()
    key_store.insert_key(ctx.db, key_id, ctx.box.seal(secret), description, ctx.now())
    return NewKey(key_id, secret)


def revoke_key(ctx: AppContext, key_id: str) -> bool:
    return key_store.set_key_status(ctx.db, key_id, KeyStatus.INACTIVE)


def list_keys(ctx: AppContext) -> list[AccessKeyRecord]:
    return key_store.list_keys(ctx.db)


def lookup_for_verification(ctx: AppContext, key_id: str) -> VerifiableKey | None:
    rec = key_store.get_key(ctx.db, key_id)
    if rec is None:
        return None
    return VerifiableKey(ctx.box.open(rec.secret_enc), rec.status is KeyStatus.ACTIVE)
