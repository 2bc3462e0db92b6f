"""Helpers for the Redis tests: a configured source with a repository, the
tailer as a process or a thread, and reading back what was archived."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from catalog.db.models import StreamBatch, StreamGap
from catalog.queries import get_source
from catalog.redisformat import decode_batch
from catalog.repository import Repository
from pitr.config import load_config
from tests.servers import PITR_BIN, RedisServer, clean_env, run_pitr, wait_until

STREAMS = "cb:stream:*"


def write_config(
    path: Path,
    repo: Path,
    url: str,
    name: str = "cache",
    keys: str = '["cb:*"]',
    section: str | None = None,
    capture: str | None = "streams",
) -> Path:
    """section: the [repository] table (default: a local directory at repo);
    capture: the source's capture key (None: left out, the default)."""
    path.write_text(
        (section or f'[repository]\nurl = "{repo}"\n')
        + f'\n[sources.{name}]\nkind = "redis"\nurl = "{url}"\n'
        f'streams = ["{STREAMS}"]\nkeys = {keys}\n'
        + (f'capture = "{capture}"\n' if capture else "")
    )
    return path


@dataclass
class RedisSource:
    server: RedisServer
    config: Path
    name: str = "cache"

    def pitr(self, *args: str, check: bool | int = True) -> subprocess.CompletedProcess[str]:
        return run_pitr(list(args), config=self.config, check=check)

    def client(self) -> Any:
        return self.server.client()

    @contextmanager
    def repo(self) -> Iterator[Repository]:
        rc = load_config(str(self.config), env={}).repository
        repo = Repository.open(rc.url, rc.catalog, store=rc.store_options)
        try:
            yield repo
        finally:
            repo.close()

    def archived(self) -> list[tuple[bytes, bytes, list[bytes]]]:
        """(stream, id, fields) of every archived entry, batch by batch."""
        return archived_entries_of(self.config, self.name)

    def gaps(self) -> list[StreamGap]:
        with self.repo() as repo, repo.catalog.session() as s:
            src = get_source(s, self.name)
            if src is None:
                return []
            return list(s.scalars(select(StreamGap).where(StreamGap.source_id == src.id)).all())


def archived_entries_of(config: Path, source: str) -> list[tuple[bytes, bytes, list[bytes]]]:
    rc = load_config(str(config), env={}).repository
    repo = Repository.open(rc.url, rc.catalog, store=rc.store_options)
    try:
        with repo.catalog.session() as s:
            src = get_source(s, source)
            if src is None:
                return []
            rows = s.scalars(
                select(StreamBatch)
                .where(StreamBatch.source_id == src.id)
                .order_by(StreamBatch.stream, StreamBatch.first_ms, StreamBatch.id)
            ).all()
            oids = [r.oid for r in rows]
        out = []
        for oid in oids:
            stream, entries = decode_batch(repo.get_chunk(oid))
            out += [(stream, entry_id, fields) for entry_id, fields in entries]
        return out
    finally:
        repo.close()


def make_source(
    server: RedisServer,
    base: Path,
    name: str = "cache",
    repository: Any = None,
    capture: str | None = "streams",
) -> RedisSource:
    """repository: a RepositorySpec fixture value (default: local);
    capture: as write_config's (the stream tailer unless told)."""
    section = repository.section(base) if repository is not None else None
    config = write_config(
        base / "pitr.toml", base / "repo", server.url, name, section=section, capture=capture
    )
    run_pitr(["init"], config=config)
    return RedisSource(server, config, name)


def instant_of(entry_id: bytes | str) -> datetime:
    """The instant a stream entry's ID stands for."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return datetime.fromtimestamp(int(text.split("-")[0]) / 1000, UTC)


def between(a: bytes, b: bytes) -> str:
    """A target (ISO 8601, UTC) after entry a's millisecond and before b's."""
    ms_a, ms_b = (int(x.decode().split("-")[0]) for x in (a, b))
    assert ms_b - ms_a >= 2, "entries too close together to put a target between them"
    return datetime.fromtimestamp((ms_a + 1) / 1000, UTC).isoformat()


class TailProcess:
    """`pitr tail` as a child process (as another OS user when given)."""

    def __init__(self, config: Path, *args: str, user: str | None = None) -> None:
        argv = [PITR_BIN, "--config", config, "tail", *args]
        # Switch user in the child itself (not through runuser, which would
        # take the signals meant for pitr).
        ids: dict[str, Any] = {}
        if user is not None and os.geteuid() == 0:
            pw = pwd.getpwnam(user)
            ids = {
                "user": pw.pw_uid,
                "group": pw.pw_gid,
                "extra_groups": os.getgrouplist(user, pw.pw_gid),
            }
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
            **ids,
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.communicate(timeout=60)

    def alive(self) -> bool:
        return self.proc.poll() is None


class TailThread:
    """A StreamTailer in a thread of the test process."""

    def __init__(self, repo: Repository, source: str, url: str, **kwargs: Any) -> None:
        from archiver.redis.tailer import StreamTailer

        self.stop_event = threading.Event()
        self.messages: list[str] = []
        kwargs.setdefault("block_ms", 100)
        kwargs.setdefault("discover_seconds", 0.2)
        self.tailer = StreamTailer(repo, source, url, [STREAMS], log=self.messages.append, **kwargs)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.tailer.run(self.stop_event)
        except BaseException as e:  # reported by stop()
            self.error = e

    def stop(self) -> Any:
        self.stop_event.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the tailer did not stop"
        if self.error is not None:
            raise self.error
        return self.tailer.stats


def wait_for_entries(source: RedisSource, n: int, timeout: float = 60) -> None:
    wait_until(lambda: len(source.archived()) >= n, timeout, f"{n} archived entries", 0.1)
