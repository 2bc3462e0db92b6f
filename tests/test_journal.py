"""The catalog as a projection of the store: the journal names every record,
a catch-up applies only what is new, a plain `wal-push` acknowledges from the
store alone (against a real PostgreSQL), and a lost catalog comes back whole."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from catalog.catchup import catch_up, set_watermark, watermark
from catalog.db.models import StreamGap, WalFile
from catalog.journal import PREFIX, entries_since, stale_entries
from catalog.queries import ensure_source
from catalog.records import GapRecord, WalRecord
from catalog.repository import Repository
from catalog.store.local import LocalStore
from tests.harness import PITR_BIN, as_user, clean_env, run_pitr, wait_until
from tests.pgsupport import Archived

NOW = datetime(2026, 12, 3, 13, 0, 30, tzinfo=UTC)


def open_repo(root: Path) -> Repository:
    repo, _ = Repository.init((root / "repo").as_uri(), f"sqlite:///{root / 'catalog.db'}")
    return repo


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    repo = open_repo(tmp_path)
    catch_up(repo)  # what `pitr init` does: the watermark starts now
    try:
        yield repo
    finally:
        repo.close()


def wal_record(name: str, oid: str = "ab" * 32) -> WalRecord:
    at = datetime.now(UTC)
    return WalRecord("db", name, "segment", 1, int(name[16:], 16), oid, 16 << 20, at, at)


def wal_rows(repo: Repository) -> list[str]:
    with repo.catalog.session() as s:
        return list(s.scalars(select(WalFile.name).order_by(WalFile.name)))


class CountingStore(LocalStore):
    """A local store that remembers what it was asked to list and read."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.listed: list[str] = []
        self.read: list[str] = []

    def list(self, prefix: str = "") -> Iterator[object]:  # type: ignore[override]
        self.listed.append(prefix)
        return super().list(prefix)

    def get(self, key: str) -> bytes:
        self.read.append(key)
        return super().get(key)


def test_a_catch_up_reads_only_the_hours_and_entries_since_the_last(tmp_path: Path) -> None:
    repo = open_repo(tmp_path)
    store = CountingStore(tmp_path / "repo")
    repo.store = store
    times = ["2026120310/20261203T100000.000000Z", "2026120312/20261203T125950.000000Z"]
    times += ["2026120313/20261203T130010.000000Z", "2026120313/20261203T130040.000000Z"]
    for i, name in enumerate(times):
        key = f"{PREFIX}{name}-none-{i:08x}"
        store.put_if_absent(key, repo.codec.seal(json.dumps({"record": f"r{i}"}).encode(), key))
    store.put_if_absent(f"{PREFIX}2026120313/20261203T130020.000000Z-cafe0001-00000009", b"x")
    store.listed.clear()

    found = list(entries_since(repo, NOW, NOW, skip_writer="cafe0001"))

    # From 30 s before the last catch-up: neither 10:00 nor 12:59:50; the
    # entry of this catalog's own writers is skipped without being read.
    assert [e.record for e in found] == ["r2", "r3"]
    assert store.listed == [f"{PREFIX}2026120313/"]
    assert all("cafe0001" not in key for key in store.read)
    repo.close()


def test_catch_up_applies_unprojected_records_once(repo: Repository) -> None:
    for name in ("000000010000000000000001", "000000010000000000000002"):
        assert repo.put_fact(wal_record(name), projected=False) is None
    gap = GapRecord("cache", "s", b"s".hex(), "1-0", "5-0", "trimmed", datetime.now(UTC))
    repo.put_fact(gap, projected=False)
    repo.put_fact(gap, projected=False)  # a retried write: two entries, one record

    assert catch_up(repo) == {"wal": 2, "stream_gap": 1}
    assert catch_up(repo) == {}  # everything it reads again is held already
    assert wal_rows(repo) == ["000000010000000000000001", "000000010000000000000002"]
    with repo.catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(StreamGap)) == 1


def test_records_of_another_catalog_are_applied_and_its_own_are_not_read(
    tmp_path: Path, repo: Repository
) -> None:
    other, _ = Repository.init(repo.store.url, f"sqlite:///{tmp_path / 'other.db'}")
    catch_up(other)
    other.put_fact(wal_record("000000010000000000000003"))  # projected into `other`
    assert catch_up(repo) == {"wal": 1}
    assert wal_rows(repo) == ["000000010000000000000003"]
    # Its own writer's entry is not applied by `other`'s catch-up (it has no row
    # because this test never committed one: the writer's job, not the reader's).
    assert catch_up(other) == {}
    other.close()


def test_an_old_watermark_fills_the_catalog_from_every_record(repo: Repository) -> None:
    repo.put_fact(wal_record("000000010000000000000004"), projected=False)
    with repo.catalog.session() as s:
        set_watermark(s, datetime.now(UTC) - timedelta(days=30))
    assert catch_up(repo) == {"wal": 1}
    with repo.catalog.session() as s:
        caught = watermark(s)
    assert caught is not None and datetime.now(UTC) - caught < timedelta(minutes=1)


def test_a_catalog_from_before_the_journal_reads_all_of_it(tmp_path: Path) -> None:
    repo = open_repo(tmp_path)  # no catch-up yet: as a catalog an older pitr kept
    with repo.catalog.session() as s:
        ensure_source(s, "db", "postgres")
    repo.put_fact(wal_record("000000010000000000000006"), projected=False)
    assert catch_up(repo) == {"wal": 1}
    repo.close()


def test_entries_no_catch_up_reads_are_stale(repo: Repository) -> None:
    repo.put_fact(wal_record("000000010000000000000005"), projected=False)
    old = f"{PREFIX}{NOW - timedelta(days=9):%Y%m%d%H}/x-none-00000000"
    repo.store.put_if_absent(old, b"x")
    assert stale_entries(repo, NOW) == [old]


def test_a_plain_push_acknowledges_without_the_catalog(archived: Archived) -> None:
    archived.marker(1)
    archived.switch_and_wait()
    info = json.loads(archived.pitr("info", "--output", "json").stdout)
    newest = info["sources"][0]["archive"]["newest_segment"]
    copy = archived.base / newest
    archived.pitr("wal-fetch", newest, str(copy))

    # What archive_command runs loads neither the CLI library nor SQLAlchemy.
    probe = (
        "import sys\nfrom pitr.entry import main\nsys.argv = sys.argv[1:]\n"
        "try:\n    main()\nexcept SystemExit as e:\n"
        "    print(e.code, 'sqlalchemy' in sys.modules, 'click' in sys.modules)\n"
    )
    python = str(PITR_BIN.parent / "python")
    argv = [python, "-c", probe, "pitr", "--config", str(archived.config), "wal-push"]
    probed = subprocess.run(
        as_user("postgres", [*argv, str(copy)]), capture_output=True, text=True, env=clean_env()
    )
    assert probed.stdout.split() == ["0", "False", "False"], probed.stderr

    # The catalog deleted: the push still succeeds, from the store alone...
    (archived.repo / "catalog.db").unlink()
    archived.marker(2)
    archived.switch_and_wait()
    assert not (archived.repo / "catalog.db").exists()
    # ...and the next command shows it; a rebuild agrees with the catch-up.
    caught_up = json.loads(archived.pitr("info", "--output", "json").stdout)["sources"][0][
        "archive"
    ]
    assert caught_up["newest_segment"] > newest
    archived.pitr("catalog", "rebuild", "--force")
    rebuilt = json.loads(archived.pitr("info", "--output", "json").stdout)["sources"][0]["archive"]
    assert rebuilt == caught_up


def test_a_plain_push_archives_the_waiting_segments_and_marks_them(archived: Archived) -> None:
    c = archived.cluster
    c.set_archive_command("false")  # a backlog builds up
    names = []
    for i in range(4):
        c.psql(f"INSERT INTO markers(n) VALUES ({i})")
        names.append(c.psql("SELECT pg_walfile_name(pg_switch_wal())").strip())
    status = c.pgdata / "pg_wal" / "archive_status"
    wait_until(lambda: all((status / f"{n}.ready").exists() for n in names), 30, "the backlog")

    # The call PostgreSQL would make for the first segment archives the others too.
    push = ["wal-push", f"pg_wal/{names[0]}"]
    run_pitr(push, config=archived.config, user="postgres", cwd=c.pgdata)
    marks = [n for n in os.listdir(status) if ".pitr-" in n and not n.endswith(".lock")]
    assert sorted(n[:24] for n in marks) == names[1:]
    for mark in marks:
        assert os.path.samefile(status / mark, c.pgdata / "pg_wal" / mark[:24])
    # The recommended archive_command then acknowledges them from the marks.
    c.set_archive_command(archived.pitr("archive-command").stdout.strip())
    archived.marker(10)
    archived.switch_and_wait()
    archive = json.loads(archived.pitr("info", "--output", "json").stdout)["sources"][0]["archive"]
    assert archive["newest_segment"] > names[-1]
    assert archived.pitr("check").returncode == 0  # no gap in what was archived
