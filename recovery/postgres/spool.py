"""WAL prefetch for recovery: a spool directory beside PGDATA.

`pitr restore` writes index.json (the WAL names recovery will ask for, in
order, with their object ids). A background prefetcher keeps the next few
files downloaded and verified in the spool, each named by its object id;
restore_command then serves a file by checking its hash and renaming it
into place. A name maps to an object id only through the current index, so
files left from an earlier restore are never served.

The serving side imports nothing heavy: it runs once per WAL segment.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from typing import Any

INDEX = "index.json"
POSITION = "position"
LOCK = "prefetch.pid"
WINDOW = 8  # files kept ahead of PostgreSQL
IDLE_EXIT = 60.0  # a prefetcher with nothing asked for this long goes away


def write_index(
    spool: str,
    source: str,
    names: list[tuple[str, str]],
    plain_ids: bool,
    records_dir: str | None = None,
) -> None:
    """plain_ids: object ids are SHA-256 of the content (unencrypted repository);
    records_dir: where a local repository keeps the source's WAL records."""
    os.makedirs(spool, mode=0o700, exist_ok=True)
    index = {
        "source": source,
        "plain_ids": plain_ids,
        "names": [list(n) for n in names],
        "records_dir": records_dir,
    }
    tmp = os.path.join(spool, INDEX + ".tmp")
    with open(tmp, "w") as f:
        json.dump(index, f)
    os.replace(tmp, os.path.join(spool, INDEX))


def read_index(spool: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(spool, INDEX)) as f:
            index: dict[str, Any] = json.load(f)
            return index
    except (FileNotFoundError, ValueError):
        return None


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def serve(spool: str, name: str, dest: str) -> bool:
    """Put the prefetched file for name at dest if the spool has it, verified."""
    index = read_index(spool)
    if index is None:
        return False
    ids = dict(index["names"])
    oid = ids.get(name)
    if oid is None:
        return False
    path = os.path.join(spool, oid)
    if not os.path.exists(path):
        _want(spool, list(ids).index(name))
        return False
    # The id names the plaintext (SHA-256), or the prefetcher recorded its hash.
    expected = oid if index.get("plain_ids") else _read(path + ".sha256")
    if expected is None or _sha256_file(path) != expected:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return False
    tmp = f"{dest}.pitr-tmp"
    try:
        # A link, not a move: PostgreSQL asks for the last segment again at
        # the end of recovery. The spool keeps only the latest file served.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.link(path, tmp)
    except OSError:  # another filesystem: copy instead
        import shutil

        shutil.copyfile(path, tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dest)
    names = list(ids)
    position = names.index(name)
    if position > 0 and ids[names[position - 1]] != oid:
        _forget(spool, ids[names[position - 1]])
    _want(spool, position + 1)
    return True


def _forget(spool: str, oid: str) -> None:
    """Remove a served file (and its recorded hash) from the spool."""
    for path in (os.path.join(spool, oid), os.path.join(spool, oid + ".sha256")):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def never_archived(spool: str, name: str) -> bool:
    """Whether a local repository holds no record of name: the quick "not
    archived" PostgreSQL's probes for a next timeline's history get (a record
    is written before any push is acknowledged, so its absence is final)."""
    index = read_index(spool)
    records = index.get("records_dir") if index else None
    if not records or "/" in name or name.startswith("."):
        return False
    if index and any(n == name for n, _ in index["names"]):  # planned: a streamed segment, say
        return False
    try:
        os.lstat(os.path.join(records, name))
    except FileNotFoundError:  # and nothing else: unreadable is not "absent"
        return os.path.isdir(records)
    except OSError:
        return False
    return False


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def _want(spool: str, position: int) -> None:
    """Tell the prefetcher where PostgreSQL is."""
    tmp = os.path.join(spool, f"{POSITION}.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(str(position))
    os.replace(tmp, os.path.join(spool, POSITION))


def _process_tag(pid: int) -> str | None:
    """pid and start time of a live process; None once it has exited (a
    zombie waiting to be reaped counts as exited: it will never write again).
    The start time tells a reused pid from the prefetcher that held it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc: ask the kernel whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return f"{pid}"
    if fields[0] in ("Z", "X"):
        return None
    return f"{pid} {fields[19]}"  # field 22 of stat: start time in clock ticks


def prefetcher_running(spool: str) -> bool:
    tag = _read(os.path.join(spool, LOCK))
    if not tag:
        return False
    try:
        pid = int(tag.split()[0])
    except ValueError:
        return False
    return _process_tag(pid) == tag


def claim_prefetch(spool: str) -> bool:
    """Become the spool's only prefetcher (a dead one's lock is taken over)."""
    lock = os.path.join(spool, LOCK)
    if prefetcher_running(spool):
        return False
    with contextlib.suppress(FileNotFoundError):
        os.unlink(lock)
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(_process_tag(os.getpid()) or str(os.getpid()))
    return True


def remove(spool: str, timeout: float = 30.0) -> None:
    """End of recovery: stop the prefetcher, then delete the spool.

    The spool is first renamed aside, so that a prefetcher started by the
    last restore_command but not yet running cannot create its lock (or any
    file) in it while it is being deleted."""
    import shutil
    import signal

    doomed = f"{spool.rstrip(os.sep)}.removing-{os.getpid()}"
    try:
        os.rename(spool, doomed)
    except FileNotFoundError:
        return
    except OSError:
        doomed = spool
    tag = _read(os.path.join(doomed, LOCK))
    if tag and prefetcher_running(doomed):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(tag.split()[0]), signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while prefetcher_running(doomed) and time.monotonic() < deadline:
            time.sleep(0.05)
    shutil.rmtree(doomed, ignore_errors=True)


def prefetch(spool: str, fetch: Any, workers: int = 2) -> None:
    """Keep the WINDOW files after the position downloaded; fetch(oid) returns
    verified plaintext. Runs until everything is fetched or nobody asks."""
    from concurrent.futures import ThreadPoolExecutor

    index = read_index(spool)
    if index is None:
        return
    names = index["names"]
    done: set[str] = set()
    last_change, last_pos = time.monotonic(), -1

    def get(oid: str) -> None:
        data = fetch(oid)
        tmp = os.path.join(spool, f".{oid}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        if not index.get("plain_ids"):
            with open(os.path.join(spool, oid + ".sha256"), "w") as f:
                f.write(hashlib.sha256(data).hexdigest())
        os.replace(tmp, os.path.join(spool, oid))

    with ThreadPoolExecutor(workers) as pool:
        while os.path.isdir(spool):
            pos = int(_read(os.path.join(spool, POSITION)) or 0)
            if pos != last_pos:
                last_change, last_pos = time.monotonic(), pos
            elif time.monotonic() - last_change > IDLE_EXIT:
                return
            wanted = [oid for _, oid in names[pos : pos + WINDOW] if oid not in done]
            if pos >= len(names):
                return
            futures = [pool.submit(get, oid) for oid in wanted]
            for oid, future in zip(wanted, futures, strict=True):
                try:
                    future.result()
                    done.add(oid)
                except Exception:
                    pass  # restore_command fetches it itself and reports the error
            time.sleep(0.05)
