"""Facts about this installation kept in the store."""

from __future__ import annotations

import secrets

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from cloudmig.store.tables import meta

INSTALLATION_ID = "installation_id"


def installation_id(engine: Engine) -> str:
    """A short random id made once per store: part of slot names, so that two cloudmig services
    on one source never take each other's slots."""
    with engine.connect() as c:
        value = c.execute(select(meta.c.value).where(meta.c.key == INSTALLATION_ID)).scalar()
    if value is not None:
        return str(value)
    try:
        with engine.begin() as c:
            c.execute(meta.insert().values(key=INSTALLATION_ID, value=secrets.token_hex(4)))
    except IntegrityError:  # another process made it first
        pass
    with engine.connect() as c:
        return str(c.execute(select(meta.c.value).where(meta.c.key == INSTALLATION_ID)).scalar_one())
