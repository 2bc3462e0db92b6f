"""`pitr export` through the command line: a SQLite source's tables and a
Redis source's keys as they were at an instant, compared with what a full
`pitr restore` of that instant holds."""

from __future__ import annotations

import base64
import csv
import io
import json
import signal
import sqlite3
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from archiver.redis.replication import now_ms
from pitr import exitcodes
from recovery.partial.writers import write_rows
from recovery.redis.replay import epochs
from tests.harness import wait_until
from tests.redisserver import RedisFactory
from tests.redissupport import RedisSource, TailProcess, make_source, wait_for_entries
from tests.rowsupport import MARK, Accident, accident_history

# -- SQLite ------------------------------------------------------------------


@pytest.fixture(scope="module")
def accident(tmp_path_factory: pytest.TempPathFactory) -> Accident:
    return accident_history(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def restored(accident: Accident, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full `pitr restore` of the target, to compare the exports with."""
    into = tmp_path_factory.mktemp("full") / "full.db"
    accident.source.restore(accident.target, into)
    return into


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def export(accident: Accident, *args: str, check: bool | int = True) -> Any:
    source = accident.source
    return source.pitr("export", "--source", source.name, "--to", iso(accident.target), *args,
                       check=check)  # fmt: skip


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def hexed(row: tuple[Any, ...]) -> list[Any]:
    return [v.hex() if isinstance(v, bytes) else v for v in row]


def test_jsonl_of_every_table_is_what_a_full_restore_holds(
    accident: Accident, restored: Path
) -> None:
    result = export(accident, "--format", "jsonl")
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert {d["table"] for d in docs} == {"accounts", "memberships", "rows"}
    for name in ("accounts", "memberships", "rows"):
        got = sorted(list(d["row"].values()) for d in docs if d["table"] == name)
        want = sorted(hexed(r) for r in query(restored, f"SELECT * FROM {name}"))
        assert got == want, name
        columns = [c[1] for c in query(restored, f"PRAGMA table_info({name})")]
        assert all(list(d["row"]) == columns for d in docs if d["table"] == name)
    assert f"exported {len(query(restored, 'SELECT * FROM accounts'))} rows of app.db/accounts" in (
        result.stderr
    )


def test_a_mark_is_a_target_too(accident: Accident) -> None:
    source = accident.source
    by_mark = source.pitr("export", "--source", source.name, "--to", MARK, "--format", "jsonl")
    assert by_mark.stdout == export(accident, "--format", "jsonl").stdout
    assert f"target: mark {MARK!r}: app at " in by_mark.stderr
    unknown = ("export", "--source", source.name, "--to", "no-such-mark", "--format", "sql")
    result = source.pitr(*unknown, check=exitcodes.USAGE)
    assert "unknown mark 'no-such-mark'" in result.stderr and MARK in result.stderr


def test_sql_loads_back_into_the_same_rows(
    accident: Accident, restored: Path, tmp_path: Path
) -> None:
    sql = export(accident, "--format", "sql", "--table", "accounts", "--table", "memberships")
    empty = sqlite3.connect(tmp_path / "loaded.db")
    for (create,) in query(restored, "SELECT sql FROM sqlite_schema WHERE type = 'table'"):
        empty.execute(create)
    empty.executescript(sql.stdout)
    empty.close()
    for name in ("accounts", "memberships"):
        everything = f"SELECT * FROM {name} ORDER BY 1, 2"
        assert query(tmp_path / "loaded.db", everything) == query(restored, everything)
    assert query(tmp_path / "loaded.db", "SELECT count(*) FROM rows") == [(0,)]


def test_csv_of_one_table_with_where_into_a_file(
    accident: Accident, restored: Path, tmp_path: Path
) -> None:
    out = tmp_path / "rich.csv"
    args = ("--format", "csv", "--table", "accounts", "--where", "balance > 1000 OR id = 0")
    export(accident, *args, "--output", str(out))
    lines = list(csv.reader(io.StringIO(out.read_text())))
    assert lines[0] == ["id", "owner", "balance", "ratio", "photo"]
    want = query(restored, "SELECT * FROM accounts WHERE balance > 1000 OR id = 0 ORDER BY id")
    assert len(lines) - 1 == len(want) == 11
    text = [["" if v is None else v.hex() if isinstance(v, bytes) else str(v) for v in r]
            for r in want]  # fmt: skip
    assert sorted(lines[1:]) == sorted(text)
    assert [p.name for p in tmp_path.iterdir()] == ["rich.csv"]  # no temp file left
    # An existing file is refused without --force, replaced with it.
    refused = export(accident, *args, "--output", str(out), check=exitcodes.UNMET)
    assert "exists" in refused.stderr and len(refused.stderr.splitlines()) == 1
    export(accident, "--format", "csv", "--table", "memberships", "--output", str(out), "--force")
    assert out.read_text().splitlines()[0] == "club,member,since"


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("--format", "sql", "--table", "nosuch"), exitcodes.USAGE, "--table nosuch: no such"),
        (("--format", "jsonl", "--where", "balance >"), exitcodes.USAGE, "--where 'balance >'"),
        (("--format", "csv"), exitcodes.USAGE, "--format csv writes one table"),
        (("--format", "csv", "--table", "a", "--table", "b"), exitcodes.USAGE, "one --table"),
        (("--format", "jsonl", "--keys", "cb:*"), exitcodes.USAGE, "--keys is for redis"),
        (("--format", "xml"), exitcodes.USAGE, "'xml' is not one of"),
    ],
)
def test_bad_input_is_one_line_and_writes_no_file(
    accident: Accident, tmp_path: Path, args: tuple[str, ...], code: int, says: str
) -> None:
    out = tmp_path / "out.txt"
    result = export(accident, *args, "--output", str(out), check=code)
    assert len(result.stderr.splitlines()) == 1 and says in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_target_before_anything_archived_is_exit_3(accident: Accident) -> None:
    source = accident.source
    args = ("export", "--source", source.name, "--to", "2001-01-01 00:00Z", "--format", "sql")
    result = source.pitr(*args, check=exitcodes.UNMET)
    assert "no base copy at or before" in result.stderr


def test_sql_literals_of_awkward_values_read_back_the_same_in_sqlite() -> None:
    values = ("it's \"quoted\"\nand -- not a comment", b"\x00\xff'", None, 7, -0.5, 1e300,
              float("inf"), True)  # fmt: skip
    columns = ["t", "b", "n", "i", "f", "big", "inf", "yes"]
    out = io.StringIO()
    assert write_rows(out, "sql", "odd.name", columns, [values], dialect="sqlite") == 1
    conn = sqlite3.connect(":memory:")
    conn.execute('CREATE TABLE "odd.name" (t, b, n, i, f, big, inf, yes)')
    conn.executescript(out.getvalue())
    assert conn.execute('SELECT * FROM "odd.name"').fetchall() == [(*values[:-1], 1)]
    pg = io.StringIO()
    write_rows(pg, "sql", "public.t", ["b", "yes"], [(b"\x01", False)])
    assert pg.getvalue() == 'INSERT INTO "public"."t" ("b", "yes") VALUES (\'\\x01\', FALSE);\n'


def test_jsonl_and_csv_shapes_of_typed_values() -> None:
    row = (b"\x01\x02", datetime(2025, 1, 16, 12, 0, tzinfo=UTC), Decimal("1.10"), None, True)
    out = io.StringIO()
    write_rows(out, "jsonl", "t", ["b", "at", "d", "n", "ok"], [row])
    assert json.loads(out.getvalue()) == {
        "table": "t",
        "row": {"b": "0102", "at": "2025-01-16T12:00:00+00:00", "d": "1.10", "n": None, "ok": True},
    }
    out = io.StringIO()
    write_rows(out, "csv", "t", ["b", "at", "d", "n", "ok"], [row])
    assert out.getvalue() == "b,at,d,n,ok\n0102,2025-01-16T12:00:00+00:00,1.10,,true\n"


# -- Redis -------------------------------------------------------------------

QUIET = 0.3


def decode(doc: dict[str, Any], text: str) -> bytes:
    return base64.b64decode(text) if doc["encoding"] == "base64" else text.encode()


def logical(doc: dict[str, Any]) -> Any:
    """An exported key's value in the form redis-py reads it."""
    v, kind = doc["value"], doc["type"]
    if kind == "string":
        return decode(doc, v)
    if kind in ("list", "set"):
        return [decode(doc, x) for x in v]
    if kind == "zset":
        return [(decode(doc, m), s) for m, s in v]
    if kind == "hash":
        return {decode(doc, f): decode(doc, x) for f, x in v.items()}
    return [(e["id"].encode(), {decode(doc, f): decode(doc, x) for f, x in e["fields"].items()})
            for e in v]  # fmt: skip


def read(client: Any, key: bytes) -> Any:
    kind = client.type(key).decode()
    if kind == "string":
        return client.get(key)
    if kind == "list":
        return client.lrange(key, 0, -1)
    if kind == "set":
        return sorted(client.smembers(key))
    if kind == "zset":
        return client.zrange(key, 0, -1, withscores=True)
    if kind == "hash":
        return client.hgetall(key)
    return client.xrange(key)


def test_redis_keys_at_the_target_are_what_a_restore_brings_back(
    redis_factory: RedisFactory, tmp_path: Path
) -> None:
    src = make_source(redis_factory(), tmp_path, capture="replication")
    c = src.client()
    c.set("cb:q", "base")
    tail = TailProcess(src.config, "--source", "cache")
    try:
        with src.repo() as repo:
            wait_until(lambda: epochs(repo, "cache"), 30, "a replication base")
        c.rpush("cb:queue", "a", "b")
        c.hset("cb:health", mapping={"db": "up", "cache": "up"})
        c.sadd("cb:set", "x", "y")
        c.zadd("cb:z", {"m1": 1.5, "m2": 2})
        c.xadd("cb:stream:ev", {"e": "1"})
        c.set("cb:bin", b"\xff\x00raw")
        set_ms = now_ms()
        c.set("cb:ttl", "v", px=600_000)
        c.set("cb:brief", "gone soon", px=200)  # expired (and deleted) before the target
        c.set("other:k", "outside the pattern")
        time.sleep(QUIET * 2)
        target_ms = now_ms()
        time.sleep(QUIET)
        c.lpop("cb:queue")
        c.set("cb:q", "later")
        c.set("cb:new", "after the target")
        time.sleep(QUIET * 2)
    finally:
        code, _, err = tail.stop(signal.SIGTERM)
    assert code == 0, err
    by_name = exported_as_restored(src, target_ms, redis_factory)
    assert "cb:new" not in by_name and "cb:brief" not in by_name and "other:k" not in by_name
    assert by_name["cb:bin"]["encoding"] == "base64"
    assert by_name["cb:q"] == {"key": "cb:q", "type": "string", "ttl_ms": None,
                               "encoding": "utf-8", "value": "base"}  # fmt: skip
    ttl = by_name["cb:ttl"]["ttl_ms"]
    assert abs(ttl - (600_000 - (target_ms - set_ms))) < 1000, ttl


def exported_as_restored(
    src: RedisSource, target_ms: int, redis_factory: RedisFactory, *more: str
) -> dict[str, dict[str, Any]]:
    """Export the source's keys at target_ms, restore it to the same instant
    into a new server, assert that both hold the same keys, values and
    TTLs; the exported objects by key."""
    target = datetime.fromtimestamp(target_ms / 1000, UTC).isoformat()
    args = ("--source", "cache", "--to", target)
    result = src.pitr("export", *args, "--format", "jsonl", *more)
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert f"exported {len(docs)} keys" in result.stderr
    dst = redis_factory()
    src.pitr("restore", *args, "--redis-url", dst.url)
    d = dst.client()
    by_name = {decode(doc, doc["key"]).decode("latin-1"): doc for doc in docs}
    assert sorted(by_name) == sorted(k.decode("latin-1") for k in d.scan_iter(match="cb:*"))
    for name, doc in by_name.items():
        key = name.encode("latin-1")
        assert doc["type"] == d.type(key).decode(), name
        assert logical(doc) == read(d, key), name
        assert (doc["ttl_ms"] is None) == (d.pttl(key) == -1), name
        assert doc["ttl_ms"] is None or 0 < d.pttl(key) <= doc["ttl_ms"], name
    return by_name


def test_redis_stream_capture_exports_its_snapshot_and_stream_entries(
    redis_factory: RedisFactory, tmp_path: Path
) -> None:
    src = make_source(redis_factory(), tmp_path)  # capture by snapshots and the stream tailer
    c = src.client()
    c.set("cb:health", "ok")
    c.hset("cb:metrics", mapping={"calls": 3})
    c.set("cb:circuit", "open", px=300_000)
    c.set("unrelated", "not archived")
    first = c.xadd("cb:stream:ev", {"n": "0"})
    src.pitr("backup", "--source", "cache")
    tail = TailProcess(src.config, "--batch-seconds", "0.2")
    try:
        ids = [first]
        for n in range(1, 5):
            time.sleep(0.2)
            ids.append(c.xadd("cb:stream:ev", {"n": str(n)}))
        wait_for_entries(src, 5)
    finally:
        code, _, err = tail.stop(signal.SIGTERM)
    assert code == 0, err
    target_ms = (int(ids[2].split(b"-")[0]) + int(ids[3].split(b"-")[0])) // 2
    by_name = exported_as_restored(src, target_ms, redis_factory)
    assert sorted(by_name) == ["cb:circuit", "cb:health", "cb:metrics", "cb:stream:ev"]
    stream = by_name["cb:stream:ev"]["value"]
    assert [e["fields"] for e in stream] == [{"n": "0"}, {"n": "1"}, {"n": "2"}]
    assert 290_000 < by_name["cb:circuit"]["ttl_ms"] <= 300_000
    only = exported_as_restored_keys(src, target_ms, "cb:h*")
    assert list(only) == ["cb:health"]


def exported_as_restored_keys(src: RedisSource, target_ms: int, pattern: str) -> list[str]:
    target = datetime.fromtimestamp(target_ms / 1000, UTC).isoformat()
    result = src.pitr("export", "--source", "cache", "--to", target, "--format", "jsonl",
                      "--keys", pattern)  # fmt: skip
    return [json.loads(line)["key"] for line in result.stdout.splitlines()]


def test_redis_refusals_are_one_line(redis_factory: RedisFactory, tmp_path: Path) -> None:
    src = make_source(redis_factory(), tmp_path)  # nothing archived yet
    base = ("export", "--source", "cache", "--to", iso(time.time()))
    for args, code, says in [
        (("--format", "sql"), exitcodes.USAGE, "exports as --format jsonl"),
        (("--format", "jsonl", "--table", "t"), exitcodes.USAGE, "--table and --where are for"),
        (("--format", "jsonl"), exitcodes.UNMET, "no snapshot"),
    ]:
        result = src.pitr(*base, *args, check=code)
        assert len(result.stderr.splitlines()) == 1 and says in result.stderr, result.stderr
