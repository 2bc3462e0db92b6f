"""The replication capture driven through pitr's command line, against real
redis-servers: `pitr tail` and `pitr restore`, the fallback to the stream
tailer when PSYNC is refused, and a target from before a source moved to
the replication capture."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from archiver.redis.replication import now_ms
from pitr import exitcodes
from recovery.redis.replay import epochs
from tests.harness import wait_until
from tests.redisserver import RedisFactory
from tests.redissupport import TailProcess, between, make_source, wait_for_entries
from tests.servers import PITR_BIN, alive, children, clean_env

QUIET = 0.3


def test_tail_and_restore_through_the_command_line(
    redis_factory: RedisFactory, tmp_path: Path
) -> None:
    src = make_source(redis_factory(), tmp_path, capture="replication")
    c = src.client()
    c.set("cb:q", "base")
    tail = TailProcess(src.config, "--source", "cache")
    with src.repo() as repo:
        wait_until(lambda: epochs(repo, "cache"), 30, "a replication base")
    c.rpush("cb:queue", "a", "b")
    c.set("unrelated", "x")
    time.sleep(QUIET / 2)
    target = datetime.fromtimestamp(now_ms() / 1000, UTC).isoformat()
    time.sleep(QUIET / 2)
    c.lpop("cb:queue")
    c.set("cb:q", "later")
    time.sleep(QUIET)
    code, out, err = tail.stop(signal.SIGTERM)
    assert code == 0, err
    assert "captured" in out + err
    dst = redis_factory()
    args = ("restore", "--source", "cache", "--to", target, "--redis-url", dst.url)
    out = src.pitr(*args).stdout
    assert "restored 2 keys" in out, out
    d = dst.client()
    assert d.get("cb:q") == b"base" and d.lrange("cb:queue", 0, -1) == [b"a", b"b"]
    assert d.get("unrelated") is None


def test_by_default_a_refused_psync_falls_back_and_restores_from_snapshot_and_streams(
    redis_factory: RedisFactory, tmp_path: Path
) -> None:
    server = redis_factory()
    c = server.client()
    c.acl_setuser(
        "app", enabled=True, passwords=["+secret"], keys=["*"], commands=["+@all", "-psync"]
    )
    src = make_source(server, tmp_path, capture=None)  # the default: replication
    text = src.config.read_text().replace(
        server.url, f"redis://app:secret@127.0.0.1:{server.port}/0"
    )
    src.config.write_text(text)
    c.set("cb:k", "snapped")
    c.xadd("cb:stream:a", {"n": "1"})
    src.pitr("backup", "--source", "cache")
    tail = TailProcess(src.config, "--source", "cache")
    c.set("cb:k", "after the snapshot")  # no stream carries it: back as snapshotted
    kept = c.xadd("cb:stream:a", {"n": "2"})
    time.sleep(0.01)
    dropped = c.xadd("cb:stream:a", {"n": "3"})
    wait_for_entries(src, 3)
    code, out, err = tail.stop(signal.SIGTERM)
    assert code == 0, err
    refusals = [line for line in (err + out).splitlines() if "PSYNC" in line]
    assert len(refusals) == 1 and "falling back to the stream tailer" in refusals[0], refusals
    assert "tailed 3 entries" in out + err
    dst = redis_factory()
    target = between(kept, dropped)
    out = src.pitr("restore", "--source", "cache", "--to", target, "--redis-url", dst.url).stdout
    assert "replayed 1 stream entries" in out, out  # n=1 is in the snapshot
    d = dst.client()
    assert d.get("cb:k") == b"snapped"
    assert [f[b"n"] for _, f in d.xrange("cb:stream:a")] == [b"1", b"2"]


def test_a_target_from_before_the_move_to_replication_is_restored_from_snapshots(
    redis_factory: RedisFactory, tmp_path: Path
) -> None:
    """A source that kept snapshots, then moved to the replication capture:
    a target before its first base still restores (from the snapshot), and
    one before anything says why in one line."""
    server = redis_factory()
    c = server.client()
    src = make_source(server, tmp_path, capture="streams")
    early = datetime.fromtimestamp(now_ms() / 1000, UTC).isoformat()
    time.sleep(QUIET / 2)
    c.set("cb:k", "snapped")
    src.pitr("backup", "--source", "cache")
    [entry] = json.loads(src.pitr("info", "--output", "json").stdout)["sources"]
    before = entry["recoverable_to"]  # with no tailer, the snapshot's own instant
    c.config_set("repl-diskless-sync-delay", 0)
    src.config.write_text(src.config.read_text().replace('"streams"', '"replication"', 1))
    tail = TailProcess(src.config, "--source", "cache")
    with src.repo() as repo:
        wait_until(lambda: epochs(repo, "cache"), 30, "a replication base")
    c.set("cb:k", "replicated")
    time.sleep(QUIET)
    code, _, err = tail.stop(signal.SIGTERM)
    assert code == 0, err
    for at, expected in ((before, b"snapped"), (datetime.now(UTC).isoformat(), b"replicated")):
        dst = redis_factory()
        src.pitr("restore", "--source", "cache", "--to", at, "--redis-url", dst.url)
        assert dst.client().get("cb:k") == expected, at
    dst = redis_factory()
    args = ("restore", "--source", "cache", "--to", early, "--redis-url", dst.url)
    failed = src.pitr(*args, check=exitcodes.UNMET)
    [line] = failed.stderr.strip().splitlines()
    assert "before the first replication base" in line and "oldest snapshot" in line, line


def test_a_restore_killed_by_sigkill_takes_its_scratch_server_with_it_and_the_next_its_dir(
    redis_factory: RedisFactory, tmp_path: Path
) -> None:
    server = redis_factory()
    src = make_source(server, tmp_path, capture="replication")
    tail = TailProcess(src.config, "--source", "cache")
    with src.repo() as repo:
        wait_until(lambda: epochs(repo, "cache"), 30, "a replication base")
    c = server.client()
    pipe = c.pipeline(transaction=False)
    for i in range(300_000):  # enough captured writes that the replay takes a while
        pipe.incr(f"cb:n:{i % 1000}")
    pipe.execute()
    time.sleep(QUIET)
    code, _, err = tail.stop(signal.SIGTERM)
    assert code == 0, err
    dst = redis_factory()
    argv: list[str | Path] = [PITR_BIN, "--config", src.config, "restore", "--source", "cache"]
    argv += ["--to", datetime.now(UTC).isoformat(), "--redis-url", dst.url]
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**clean_env(), "TMPDIR": str(tmp)}
    restore = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        scratch = wait_until(lambda: children(restore.pid, "redis-server"), 60, "a scratch")
    finally:
        restore.kill()
        restore.wait(30)
    assert restore.returncode == -signal.SIGKILL, "the restore ended before it was killed"
    wait_until(lambda: not any(alive(p) for p in scratch), 10, "the scratch server's end")
    [left] = tmp.glob("pitr-replay-*")  # no finally ran: the directory stays, for now
    again = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert not left.exists(), "the next restore did not sweep the dead one's directory"
    assert not list(tmp.iterdir()), "a finished restore left something behind"
