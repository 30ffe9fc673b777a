"""Slots: a slot name per task, durable slot drops, an installation id; typed failure codes;
task ids never reused on SQLite (AUTOINCREMENT).

Revision ID: 0002
Revises: 0001

Frozen: later schema changes go into new revisions, never here.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    # On SQLite the table is rebuilt (recreate="always") so that it gets AUTOINCREMENT; env.py turns
    # foreign keys off for the rebuild, or dropping the old table would cascade to task_events.
    with op.batch_alter_table(
        "tasks", recreate="always" if sqlite else "auto", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.add_column(sa.Column("slot_name", sa.String(length=63), nullable=True))
        batch.add_column(sa.Column("reason_code", sa.String(length=64), server_default="", nullable=False))
    # Tasks created before this revision hold slots under the old, per-task name.
    op.execute(
        "UPDATE tasks SET slot_name = 'cloudmig_task_' || CAST(id AS VARCHAR(20))"
        " WHERE kind = 'migration' AND stage <> 'precheck'"
    )
    op.create_table(
        "meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "slot_drops",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("slot_name", sa.String(length=63), nullable=False),
        sa.Column("source_ip", sa.String(length=256), nullable=False),
        sa.Column("source_port", sa.Integer(), nullable=False),
        sa.Column("source_account", sa.String(length=128), nullable=False),
        sa.Column("source_password_enc", sa.Text(), nullable=False),
        sa.Column("source_tls", sa.Text(), server_default="{}", nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_ip", "source_port", "slot_name", name="uq_slot_drops_slot"),
    )


def downgrade() -> None:
    op.drop_table("slot_drops")
    op.drop_table("meta")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("reason_code")
        batch.drop_column("slot_name")
