"""initial schema

Revision ID: 0001
Revises: (none)
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "objects",
        sa.Column("oid", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("stored_size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("oid"),
    )
    op.create_table(
        "repo_meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("system_identifier", sa.String(length=32), nullable=True),
        sa.Column("pg_version", sa.Integer(), nullable=True),
        sa.Column("wal_segment_size", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "backups",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("stored_bytes", sa.BigInteger(), nullable=False),
        sa.Column("manifest_oid", sa.String(length=64), nullable=False),
        sa.Column("timeline", sa.Integer(), nullable=True),
        sa.Column("start_lsn", sa.String(length=32), nullable=True),
        sa.Column("stop_lsn", sa.String(length=32), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_backups_source_id"), ["source_id"], unique=False)

    op.create_table(
        "stream_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("stream", sa.String(length=512), nullable=False),
        sa.Column("first_id", sa.String(length=48), nullable=False),
        sa.Column("last_id", sa.String(length=48), nullable=False),
        sa.Column("first_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_ms", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("oid", sa.String(length=64), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_id", "stream", "first_id"),
    )
    with op.batch_alter_table("stream_batches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stream_batches_last_ms"), ["last_ms"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_stream_batches_source_id"), ["source_id"], unique=False
        )

    op.create_table(
        "stream_gaps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("stream", sa.String(length=512), nullable=False),
        sa.Column("from_id", sa.String(length=48), nullable=False),
        sa.Column("to_id", sa.String(length=48), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("stream_gaps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stream_gaps_source_id"), ["source_id"], unique=False)

    op.create_table(
        "wal_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("timeline", sa.Integer(), nullable=False),
        sa.Column("segno", sa.BigInteger(), nullable=True),
        sa.Column("oid", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_id", "name"),
    )
    with op.batch_alter_table("wal_files", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_wal_files_source_id"), ["source_id"], unique=False)

    op.create_table(
        "backup_objects",
        sa.Column("backup_id", sa.String(length=64), nullable=False),
        sa.Column("oid", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["backup_id"], ["backups.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("backup_id", "oid"),
    )
    with op.batch_alter_table("backup_objects", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_backup_objects_oid"), ["oid"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("backup_objects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_backup_objects_oid"))

    op.drop_table("backup_objects")
    with op.batch_alter_table("wal_files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wal_files_source_id"))

    op.drop_table("wal_files")
    with op.batch_alter_table("stream_gaps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stream_gaps_source_id"))

    op.drop_table("stream_gaps")
    with op.batch_alter_table("stream_batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stream_batches_source_id"))
        batch_op.drop_index(batch_op.f("ix_stream_batches_last_ms"))

    op.drop_table("stream_batches")
    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_backups_source_id"))

    op.drop_table("backups")
    op.drop_table("sources")
    op.drop_table("repo_meta")
    op.drop_table("objects")
