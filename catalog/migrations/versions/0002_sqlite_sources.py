"""SQLite sources: frame batches and gaps (SQLite reserves names that
begin with sqlite_, hence sqlitedb_)

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sqlitedb_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("db", sa.String(length=255), nullable=False),
        sa.Column("generation", sa.String(length=32), nullable=False),
        sa.Column("gfirst", sa.BigInteger(), nullable=False),
        sa.Column("glast", sa.BigInteger(), nullable=False),
        sa.Column("cycle", sa.String(length=32), nullable=False),
        sa.Column("first_frame", sa.BigInteger(), nullable=False),
        sa.Column("last_frame", sa.BigInteger(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("commits", sa.Integer(), nullable=False),
        sa.Column("oid", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_id", "db", "generation", "gfirst"),
    )
    op.create_index("ix_sqlitedb_batches_source_id", "sqlitedb_batches", ["source_id"])
    op.create_index("ix_sqlitedb_batches_last_seen", "sqlitedb_batches", ["last_seen"])
    op.create_table(
        "sqlitedb_gaps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("db", sa.String(length=255), nullable=False),
        sa.Column("generation", sa.String(length=32), nullable=False),
        sa.Column("from_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("to_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sqlitedb_gaps_source_id", "sqlitedb_gaps", ["source_id"])


def downgrade() -> None:
    op.drop_table("sqlitedb_gaps")
    op.drop_table("sqlitedb_batches")
