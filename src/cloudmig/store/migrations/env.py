"""Alembic environment: the engine comes from cloudmig.store.db (config.attributes)."""

from __future__ import annotations

from alembic import context

from cloudmig.store.tables import metadata

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
