"""Clusters initialised with segments other than 16 MiB archive, back up
and restore like any other: names are read for the segment size the
cluster's WAL headers give, not for the default."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import PG_BIN
from tests.pgsupport import markers_in, midpoint, start_archiving
from tests.servers import ClusterFactory


@pytest.mark.parametrize("segsize_mb", [1, 64], ids=["1MiB", "64MiB"])
def test_segments_of_any_size_archive_and_restore(
    pg_cluster_factory: ClusterFactory, shared_tmp: Path, segsize_mb: int
) -> None:
    cluster = pg_cluster_factory(start=False, wal_segsize_mb=segsize_mb)
    # Begin past the 256th segment of the first log, where reading a 1 MiB
    # cluster's names for 16 MiB segments says "not a WAL file name".
    cluster._run_as_postgres(
        [PG_BIN / "pg_resetwal", "-l", "0000000100000000000001F0", cluster.pgdata], "pg_resetwal"
    )
    cluster.start()
    archived = start_archiving(cluster, shared_tmp, pg_cluster_factory)
    archived.pitr("backup", "--source", "db")
    first = archived.marker(1)
    cluster.psql("CREATE TABLE filler (i int)")
    cluster.psql(
        "DO $$ BEGIN FOR i IN 1..3 LOOP INSERT INTO filler VALUES (i); "
        "PERFORM pg_switch_wal(); END LOOP; END $$"
    )
    last = cluster.psql("SELECT pg_walfile_name(pg_current_wal_lsn())").strip()
    second = archived.marker(2)
    archived.switch_and_wait(timeout=180)
    status = cluster.psql("SELECT failed_count, last_archived_wal FROM pg_stat_archiver").split("|")
    assert int(status[0]) == 0, cluster.log_tail(20)
    assert status[1].strip() >= last > "0000000100000000000001F0"

    archived.pitr("check")  # exits 3 on a hole in the chain
    pgdata = archived.base / "restored"
    archived.pitr(
        "restore",
        "--source",
        "db",
        "--to",
        midpoint(first, second).isoformat(),
        "--pgdata",
        str(pgdata),
    )
    restored = archived.restored(pgdata)
    try:
        assert markers_in(restored) == [1]
        assert restored.psql("SHOW wal_segment_size").strip() == f"{segsize_mb}MB"
    finally:
        restored.stop()
