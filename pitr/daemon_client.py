"""The archive_command side of the daemon: ask it over a local socket.

Kept free of heavy imports: this runs once per WAL segment. The common
case (a daemon started with the same config file and environment) needs no
TOML parser, no json and no `socket` module: the daemon links a second name
to its socket, derived from the config file's identity, and the fixed
answer to a good push is recognised as bytes.
"""

from __future__ import annotations

import os
import zlib

TYPE_CHECKING = False  # typing itself costs milliseconds at every start
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

OK_ANSWER = b'{"ok": true}\n'


def _runtime_dir() -> str:
    return os.environ.get("TMPDIR") or "/tmp"


def socket_path(repository_url: str) -> str:
    """One daemon per repository: its socket's name derives from the URL.
    (A checksum is enough: every request names its repository and the daemon
    refuses one that is not its own.)"""
    digest = f"{zlib.crc32(repository_url.encode()):08x}{len(repository_url):04x}"
    return os.path.join(_runtime_dir(), f"pitr-{digest}.sock")


def config_identity(config_path: str, env: Mapping[str, str]) -> str | None:
    """What makes two processes read the same repository without parsing the
    config: the same file, unchanged, and the same overrides."""
    try:
        st = os.stat(config_path)
    except OSError:
        return None
    return (
        f"{os.path.realpath(config_path)}|{st.st_dev}:{st.st_ino}:{st.st_size}:"
        f"{st.st_mtime_ns}|{env.get('PITR_REPO', '')}|{env.get('PITR_CATALOG', '')}"
    )


def config_socket_path(identity: str) -> str:
    digest = f"{zlib.crc32(identity.encode()):08x}{len(identity):04x}"
    return os.path.join(_runtime_dir(), f"pitr-c{digest}.sock")


def socket_id(path: str) -> tuple[int, int] | None:
    """(device, inode) of the socket at path (a link is followed); None when
    there is none, which tells "no daemon" without a connect."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if st.st_mode & 0o170000 == 0o140000 else None  # S_IFSOCK


def request_line(fields: dict[str, str]) -> bytes:
    """One request as the JSON line the daemon reads; json is imported only
    for a text that UTF-8 cannot carry as it is (an undecodable path)."""
    body = ", ".join(f"{json_string(k)}: {json_string(v)}" for k, v in fields.items())
    try:
        return ("{" + body + "}\n").encode()
    except UnicodeEncodeError:
        import json

        return json.dumps(fields).encode() + b"\n"


def ask(path: str, request: dict[str, Any], timeout: float = 600) -> dict[str, Any] | None:
    """The daemon's answer, or None when no daemon listens (or it went away
    before answering): the caller then does the work itself."""
    import json

    answer = ask_raw(path, json.dumps(request).encode() + b"\n", timeout)
    if answer is None:
        return None
    decoded = json.loads(answer)
    return decoded if isinstance(decoded, dict) else None


def ask_raw(path: str, request: bytes, timeout: float = 600) -> bytes | None:
    """One request line out, one answer line back; None when nobody answers."""
    import _socket  # the C module: `socket` costs milliseconds of enum set-up

    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(request)
        data = b""
        while not data.endswith(b"\n"):
            part = s.recv(65536)
            if not part:
                return None
            data += part
        return data
    except OSError:  # no such socket, refused, reset, timed out: no daemon
        return None
    finally:
        s.close()


def json_string(text: str) -> str:
    """A JSON string literal, without importing json."""
    out = text.replace("\\", "\\\\").replace('"', '\\"')
    if any(ord(c) < 0x20 for c in out):
        out = "".join(f"\\u{ord(c):04x}" if ord(c) < 0x20 else c for c in out)
    return f'"{out}"'
