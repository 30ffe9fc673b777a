"""Initial schema: access keys, nonces, instances, tasks, task events.

Revision ID: 0001
Revises:
"""

from alembic import op

from cloudmig.store.tables import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TABLES = ("access_keys", "nonces", "instances", "tasks", "task_events")


def upgrade() -> None:
    bind = op.get_bind()
    # The first revision is the schema as declared; later revisions alter it step by step.
    metadata.create_all(bind, tables=[metadata.tables[name] for name in _TABLES])


def downgrade() -> None:
    bind = op.get_bind()
    metadata.drop_all(bind, tables=[metadata.tables[name] for name in reversed(_TABLES)])
