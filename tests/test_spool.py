"""The restore prefetch spool: what it serves and what it refuses."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from recovery.postgres.spool import claim_prefetch, prefetch, prefetcher_running, serve, write_index
from tests.servers import wait_until


def oid(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_serves_verified_files_in_order_keeping_only_the_latest(tmp_path: Path) -> None:
    a, b = b"segment a" * 1000, b"segment b" * 1000
    spool = str(tmp_path / "spool")
    write_index(spool, "db", [("A", oid(a)), ("B", oid(b))], plain_ids=True)
    Path(spool, oid(a)).write_bytes(a)
    Path(spool, oid(b)).write_bytes(b)
    dest = tmp_path / "RECOVERYXLOG"
    assert serve(spool, "A", str(dest))
    assert dest.read_bytes() == a
    assert Path(spool, "position").read_text() == "1"
    dest.unlink()  # as PostgreSQL does before it asks for the next file
    assert serve(spool, "B", str(dest))
    assert dest.read_bytes() == b
    assert not Path(spool, oid(a)).exists()  # served before the latest: gone
    assert Path(spool, "position").read_text() == "2"
    # The end of recovery asks for the last file again: still served.
    assert serve(spool, "B", str(tmp_path / "again"))
    assert (tmp_path / "again").read_bytes() == b


def test_refuses_names_outside_the_index_missing_and_damaged_files(tmp_path: Path) -> None:
    a = b"segment a" * 1000
    spool = str(tmp_path / "spool")
    write_index(spool, "db", [("A", oid(a))], plain_ids=True)
    dest = tmp_path / "out"
    assert not serve(spool, "Z", str(dest))  # not in this restore's index
    assert not serve(spool, "A", str(dest))  # not prefetched yet
    damaged = bytearray(a)
    damaged[10] ^= 1
    Path(spool, oid(a)).write_bytes(bytes(damaged))
    assert not serve(spool, "A", str(dest))
    assert not Path(spool, oid(a)).exists()  # thrown away, fetched again later
    assert not dest.exists()
    assert not serve(str(tmp_path / "no-spool"), "A", str(dest))


def test_a_file_from_an_earlier_restore_is_not_served(tmp_path: Path) -> None:
    old, new = b"old timeline's A" * 100, b"new A" * 100
    spool = str(tmp_path / "spool")
    write_index(spool, "db", [("A", oid(old))], plain_ids=True)
    Path(spool, oid(old)).write_bytes(old)
    write_index(spool, "db", [("A", oid(new))], plain_ids=True)  # the next restore
    assert not serve(spool, "A", str(tmp_path / "out"))


def test_encrypted_ids_are_checked_against_the_prefetcher_hash(tmp_path: Path) -> None:
    data = b"plaintext of an encrypted repository's segment"
    spool = str(tmp_path / "spool")
    write_index(spool, "db", [("A", "hmac-id-1"), ("B", "hmac-id-2")], plain_ids=False)
    Path(spool, "position").write_text("0")
    assert claim_prefetch(spool) and prefetcher_running(spool)
    assert not claim_prefetch(spool)  # only one prefetcher per spool
    fetched: list[str] = []

    def fetch(object_id: str) -> bytes:
        fetched.append(object_id)
        return data

    worker = threading.Thread(target=prefetch, args=(spool, fetch))
    worker.start()
    wait_until(
        lambda: Path(spool, "hmac-id-2").exists() and Path(spool, "hmac-id-1").exists(),
        10,
        "both files to be prefetched",
    )
    Path(spool, "position").write_text("2")  # PostgreSQL is past the end: the prefetcher stops
    worker.join(10)
    assert not worker.is_alive()
    assert sorted(fetched) == ["hmac-id-1", "hmac-id-2"]
    assert Path(spool, "hmac-id-1.sha256").read_text() == hashlib.sha256(data).hexdigest()
    dest = tmp_path / "out"
    assert serve(spool, "B", str(dest)) and dest.read_bytes() == data
    Path(spool, "hmac-id-1.sha256").write_text("0" * 64)  # a hash that does not match
    assert not serve(spool, "A", str(tmp_path / "out2"))


def test_a_prefetcher_that_exited_is_not_running_even_before_it_is_reaped(tmp_path: Path) -> None:
    """An orphaned prefetcher lingers as a zombie until init reaps it;
    end-of-recovery must not wait for that, nor trust a reused pid."""
    import subprocess

    from recovery.postgres.spool import _process_tag

    spool = tmp_path / "spool"
    spool.mkdir()
    child = subprocess.Popen(["sleep", "0.3"])
    tag = _process_tag(child.pid)
    assert tag is not None and tag.startswith(f"{child.pid} ")
    (spool / "prefetch.pid").write_text(tag)
    assert prefetcher_running(str(spool))
    wait_until(
        lambda: Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z",
        10,
        "the child to exit (a zombie: not waited for yet)",
    )
    assert not prefetcher_running(str(spool))
    child.wait()
    (spool / "prefetch.pid").write_text(f"{os.getpid()} 1")  # a live pid, another start time
    assert not prefetcher_running(str(spool))


def test_recovery_end_command_stops_the_prefetcher_and_removes_the_spool(tmp_path: Path) -> None:
    import subprocess

    from recovery.postgres.spool import _process_tag
    from tests.servers import PITR_BIN

    spool = tmp_path / "spool"
    write_index(str(spool), "db", [("A", "x")], plain_ids=True)
    prefetcher = subprocess.Popen(["sleep", "60"])  # stands in for pitr wal-prefetch
    (spool / "prefetch.pid").write_text(_process_tag(prefetcher.pid) or "")
    # The config is never read on this path (PostgreSQL runs it at promotion).
    subprocess.run(
        [str(PITR_BIN), "--config", "/nonexistent.toml", "wal-prefetch", "--remove"]
        + ["--spool", str(spool)],
        check=True,
        timeout=60,
    )
    assert prefetcher.wait(10) == -15  # SIGTERM
    assert not spool.exists()


def test_a_late_writer_cannot_keep_the_spool_alive(tmp_path: Path) -> None:
    """A prefetcher started by the last restore_command may claim its lock
    while the spool is being deleted; the spool must still be gone after."""
    import subprocess
    import sys

    from recovery.postgres.spool import remove

    spool = tmp_path / "spool"
    write_index(str(spool), "db", [("A", "x")], plain_ids=True)
    writer = subprocess.Popen([sys.executable, "-c", (
        "import itertools, sys\n"
        "for i in itertools.count():\n"
        "    try: open(f'{sys.argv[1]}/prefetch.pid.{i % 50}', 'w').close()\n"
        "    except FileNotFoundError: pass\n"), str(spool)])  # fmt: skip
    try:
        wait_until(lambda: len(list(spool.iterdir())) > 10, 30, "the writer to start")
        remove(str(spool))
        assert not spool.exists()
        assert list(tmp_path.iterdir()) == []  # nothing set aside is left either
    finally:
        writer.kill()
        writer.wait()


def test_timeline_one_history_is_answered_not_archived_at_once(tmp_path: Path) -> None:
    """Recovery asks for 00000001.history when it picks a new timeline; no
    PostgreSQL ever writes it, so the answer needs neither config nor store."""
    import subprocess

    from tests.servers import PITR_BIN

    dest = tmp_path / "RECOVERYHISTORY"

    def fetch(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PITR_BIN), "--config", str(tmp_path / "absent.toml"), "wal-fetch"]
            + ["--source", "db", name, str(dest)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    result = fetch("00000001.history")
    assert result.returncode == 1, result.stderr
    assert not dest.exists()
    other = fetch("00000002.history")
    assert other.returncode == 128  # any other name goes to the store (here: no config)


def test_a_local_repository_answers_not_archived_from_its_records(tmp_path: Path) -> None:
    """What is not in the index is looked up among the local repository's
    WAL records: absent means not archived; present goes to the full fetch."""
    import subprocess

    from recovery.postgres.spool import never_archived
    from tests.servers import PITR_BIN

    records = tmp_path / "repo" / "records" / "db" / "wal"
    records.mkdir(parents=True)
    (records / "00000002.history").write_bytes(b"sealed record")
    spool = str(tmp_path / "spool")
    write_index(spool, "db", [], plain_ids=True, records_dir=str(records))
    assert never_archived(spool, "00000003.history")
    assert not never_archived(spool, "00000002.history")
    assert not never_archived(spool, "../wal/00000002.history")

    def fetch(name: str) -> int:
        argv = [str(PITR_BIN), "--config", str(tmp_path / "absent.toml"), "wal-fetch"]
        argv += ["--source", "db", "--spool", spool, name, str(tmp_path / "dest")]
        return subprocess.run(argv, capture_output=True, timeout=60).returncode

    assert fetch("00000003.history") == 1  # no config read: answered from the records
    assert fetch("00000002.history") == 128  # archived: the full fetch (no config here)

    write_index(spool, "db", [], plain_ids=True)  # a repository on S3: no records_dir
    assert not never_archived(spool, "00000003.history")
    moved = str(tmp_path / "moved" / "records" / "db" / "wal")  # the repository is gone
    write_index(spool, "db", [], plain_ids=True, records_dir=moved)
    assert not never_archived(spool, "00000003.history")
