"""The test servers themselves: each fixture talks to a real server."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.servers import (
    PG_BIN,
    ClusterFactory,
    PitrFailed,
    PostgresCluster,
    RedisFactory,
    RedisServer,
    S3Bucket,
    ServerError,
    as_user,
    postgres_ids,
    run_pitr,
)
from tests.servers import wait_until as poll


def test_postgres_table_round_trip(pg_cluster: PostgresCluster) -> None:
    pg_cluster.execute("CREATE TABLE marker (id int PRIMARY KEY, note text)")
    pg_cluster.execute("INSERT INTO marker VALUES (1, 'one'), (2, 'two')")
    assert pg_cluster.psql("SELECT id, note FROM marker ORDER BY id") == "1|one\n2|two"
    assert pg_cluster.psql("SHOW port") == str(pg_cluster.port)
    assert pg_cluster.psql("SHOW wal_level") == "replica"
    assert pg_cluster.psql("SHOW fsync") == "on"
    with pg_cluster.connect() as conn:
        assert conn.execute("SELECT count(*) FROM marker").fetchone() == (2,)


def test_postgres_sql_error_carries_stderr(pg_cluster: PostgresCluster) -> None:
    with pytest.raises(ServerError, match="no_such_table"):
        pg_cluster.psql("SELECT * FROM no_such_table")


def test_archive_command_runs_as_postgres(pg_cluster: PostgresCluster, shared_tmp: Path) -> None:
    archive = shared_tmp / "archive"
    archive.mkdir(mode=0o777)
    archive.chmod(0o777)
    whoami = shared_tmp / "archiver-user"
    pg_cluster.set_archive_command(
        f"cp %p {shlex.quote(str(archive))}/%f && id -un > {shlex.quote(str(whoami))}"
    )
    assert pg_cluster.psql("SHOW archive_command").startswith("cp %p ")

    pg_cluster.execute("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g")
    segment = pg_cluster.psql("SELECT pg_walfile_name(pg_switch_wal())")

    archived = archive / segment

    def copied() -> bool:
        return archived.exists() and archived.stat().st_size == 16 * 1024 * 1024

    poll(copied, 60, f"{segment} in the archive", detail=pg_cluster.log_tail)
    uid, _ = postgres_ids()
    assert archived.stat().st_uid == uid
    user = poll(lambda: whoami.exists() and whoami.read_text().strip(), 10, "the archiver's name")
    assert user == "postgres"


def test_archive_command_set_before_start(
    pg_cluster_factory: ClusterFactory, shared_tmp: Path
) -> None:
    archive = shared_tmp / "archive"
    archive.mkdir()
    archive.chmod(0o777)
    cluster = pg_cluster_factory(start=False, archive_command=f"cp %p {archive}/%f")
    cluster.start()
    assert cluster.psql("SHOW archive_command") == f"cp %p {archive}/%f"
    cluster.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
    segment = cluster.psql("SELECT pg_walfile_name(pg_switch_wal())")
    poll((archive / segment).exists, 60, f"{segment} in the archive", detail=cluster.log_tail)


def test_postgres_survives_kill9(pg_cluster: PostgresCluster) -> None:
    pg_cluster.execute("CREATE TABLE durable (id int); INSERT INTO durable VALUES (42)")
    pg_cluster.kill9()
    assert not pg_cluster.running
    pg_cluster.start()
    assert pg_cluster.psql("SELECT id FROM durable") == "42"
    assert "not properly shut down" in pg_cluster.log_tail(200)


def test_postgres_restart_keeps_data(pg_cluster: PostgresCluster) -> None:
    pg_cluster.execute("CREATE TABLE kept (id int); INSERT INTO kept VALUES (7)")
    old_pid = pg_cluster.pid
    pg_cluster.restart()
    assert pg_cluster.pid != old_pid
    assert pg_cluster.psql("SELECT id FROM kept") == "7"


def test_restored_pgdata_recovers_and_promotes(
    pg_cluster: PostgresCluster, pg_cluster_factory: ClusterFactory, shared_tmp: Path
) -> None:
    pg_cluster.execute("CREATE TABLE m (id int); INSERT INTO m VALUES (1), (2)")
    copy = shared_tmp / "restored"
    argv = [PG_BIN / "pg_basebackup", "-D", copy, "-X", "stream", "-d", pg_cluster.dsn]
    subprocess.run(as_user("postgres", argv), check=True, capture_output=True)
    (copy / "recovery.signal").touch()

    restored = pg_cluster_factory.from_pgdata(copy, settings={"restore_command": "/bin/false"})
    assert restored.port != pg_cluster.port
    restored.start_recovered(timeout=120)
    assert restored.psql("SELECT pg_is_in_recovery()") == "f"
    assert restored.psql("SELECT id FROM m ORDER BY id") == "1\n2"
    assert not (copy / "recovery.signal").exists()
    # the original is untouched and still answers on its own port
    assert pg_cluster.psql("SELECT pg_is_in_recovery()") == "f"


def test_failed_recovery_reports_the_log(
    pg_cluster: PostgresCluster, pg_cluster_factory: ClusterFactory, shared_tmp: Path
) -> None:
    copy = shared_tmp / "broken"
    argv = [PG_BIN / "pg_basebackup", "-D", copy, "-X", "none", "-d", pg_cluster.dsn]
    subprocess.run(as_user("postgres", argv), check=True, capture_output=True)
    (copy / "recovery.signal").touch()
    # no WAL in the copy and none to fetch: recovery cannot reach consistency
    restored = pg_cluster_factory.from_pgdata(copy, settings={"restore_command": "/bin/false"})
    with pytest.raises(ServerError, match="(?s)exited.*log"):
        restored.start_recovered(timeout=60)


def test_from_pgdata_refuses_a_directory_postgres_cannot_reach(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o700)  # as pytest's own basetemp is
    fake = tmp_path / "pgdata"
    fake.mkdir()
    (fake / "PG_VERSION").write_text("15\n")
    if os.geteuid() != 0:
        pytest.fail("the test suite runs as root")
    with pytest.raises(ServerError, match="cannot reach"):
        PostgresCluster.from_pgdata(fake).cleanup()


def test_redis_set_get(redis_server: RedisServer) -> None:
    with redis_server.client() as c:
        c.set("cb:key", "value")
        assert c.get("cb:key") == b"value"
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"


def test_redis_restart_empty_or_kept(redis_server: RedisServer) -> None:
    with redis_server.client() as c:
        c.set("a", "1")
    redis_server.restart(keep_data=True)
    with redis_server.client() as c:
        assert c.get("a") == b"1"
    redis_server.restart()
    with redis_server.client() as c:
        assert c.dbsize() == 0


def test_redis_kill9_and_factory(redis_factory: RedisFactory) -> None:
    one, two = redis_factory(), redis_factory()
    assert one.port != two.port
    with one.client() as c:
        c.set("k", "v")
    one.kill9()
    assert not one.running
    with two.client() as c:
        assert c.get("k") is None


def test_s3_put_get(s3_bucket: S3Bucket) -> None:
    s3 = s3_bucket.client()
    s3.put_object(Bucket=s3_bucket.bucket, Key="objects/ab/cd", Body=b"payload")
    body = s3.get_object(Bucket=s3_bucket.bucket, Key="objects/ab/cd")["Body"].read()
    assert body == b"payload"
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3_bucket.bucket in names
    assert s3_bucket.endpoint_url.startswith("http://127.0.0.1:")


def test_s3_buckets_are_fresh(s3_bucket: S3Bucket) -> None:
    listing = s3_bucket.client().list_objects_v2(Bucket=s3_bucket.bucket)
    assert listing["KeyCount"] == 0
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"


def test_pitr_runs_as_postgres(pitr_bin: Path) -> None:
    assert pitr_bin.is_file()
    as_root = run_pitr(["--help"])
    assert "wal-push" in as_root.stdout
    as_postgres = run_pitr(["--help"], user="postgres", cwd="/")
    assert as_postgres.stdout == as_root.stdout


def test_run_pitr_checks_the_exit_code() -> None:
    with pytest.raises(PitrFailed, match="no-such-command"):
        run_pitr(["no-such-command"])
    result = run_pitr(["no-such-command"], check=2)
    assert result.returncode == 2
