"""Redis replication capture: epochs (a base RDB each), their base chunks,
and batches of the command stream

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "repl_epochs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.String(length=96), nullable=False),
        sa.Column("replid", sa.String(length=64), nullable=False),
        sa.Column("start_offset", sa.BigInteger(), nullable=False),
        sa.Column("base_chunks", sa.Integer(), nullable=False),
        sa.Column("base_size", sa.BigInteger(), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("base_ms", sa.BigInteger(), nullable=False),
        sa.Column("previous", sa.String(length=96), nullable=True),
        sa.Column("lost_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_id", "epoch"),
    )
    op.create_index("ix_repl_epochs_source_id", "repl_epochs", ["source_id"])
    op.create_index("ix_repl_epochs_base_ms", "repl_epochs", ["base_ms"])
    op.create_table(
        "repl_epoch_objects",
        sa.Column("epoch_id", sa.Integer(), nullable=False),
        sa.Column("oid", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["epoch_id"], ["repl_epochs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("epoch_id", "oid"),
    )
    op.create_index("ix_repl_epoch_objects_oid", "repl_epoch_objects", ["oid"])
    op.create_table(
        "repl_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.String(length=96), nullable=False),
        sa.Column("start_offset", sa.BigInteger(), nullable=False),
        sa.Column("end_offset", sa.BigInteger(), nullable=False),
        sa.Column("first_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_ms", sa.BigInteger(), nullable=False),
        sa.Column("marks", sa.Integer(), nullable=False),
        sa.Column("oid", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("resumed_from_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_id", "epoch", "start_offset"),
    )
    op.create_index("ix_repl_batches_source_id", "repl_batches", ["source_id"])
    op.create_index("ix_repl_batches_last_ms", "repl_batches", ["last_ms"])
    # Replication records written before this revision were never projected:
    # an ancient watermark makes the next catch-up read every record (catalog.catchup).
    op.execute(
        "UPDATE repo_meta SET value = '1970-01-01T00:00:00+00:00' WHERE key = 'journal_caught_up'"
    )


def downgrade() -> None:
    op.drop_table("repl_batches")
    op.drop_table("repl_epoch_objects")
    op.drop_table("repl_epochs")
