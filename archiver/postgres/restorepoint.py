"""The PostgreSQL side of `pitr mark`: a named restore point in the WAL,
which recovery_target_name stops at exactly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from archiver.errors import BackupFailed, SourceUnreachable
from catalog.errors import first_line


@dataclass(frozen=True)
class RestorePoint:
    lsn: str  # the end of the restore point's record, as PostgreSQL returns it
    timeline: int
    at: datetime  # the server's clock when it was written


def create_restore_point(source: str, dsn: str, name: str) -> RestorePoint:
    """pg_create_restore_point(name), then a WAL switch so that the segment
    holding it is archived now rather than at the next archive_timeout (the
    rest of the closed segment is zeros, which cost nothing stored)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    from catalog.db.engine import pg_timeouts

    try:
        conn = psycopg.connect(dsn, autocommit=True, **pg_timeouts(conninfo_to_dict(dsn)))
    except psycopg.Error as e:
        raise SourceUnreachable(f"mark {source}: cannot connect: {first_line(e)}") from e
    try:
        with conn:
            row = conn.execute(
                "SELECT p::text, pg_walfile_name(p), clock_timestamp() "
                "FROM pg_create_restore_point(%s) AS p",
                (name,),
            ).fetchone()
            conn.execute("SELECT pg_switch_wal()")
    except psycopg.Error as e:
        # A standby refuses restore points (recovery is in progress), as does
        # a server with wal_level minimal.
        raise BackupFailed(f"mark {source}: {first_line(e)}") from e
    assert row is not None
    lsn, walfile, at = row
    return RestorePoint(str(lsn), int(str(walfile)[:8], 16), at.astimezone(UTC))
