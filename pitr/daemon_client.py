"""The archive_command side of the daemon: ask it over a local socket.

Kept free of heavy imports: this runs once per WAL segment.
"""

from __future__ import annotations

import json
import os
import socket
import zlib
from typing import Any


def socket_path(repository_url: str) -> str:
    """One daemon per repository: its socket's name derives from the URL.
    (A checksum is enough: every request names its repository and the daemon
    refuses one that is not its own.)"""
    digest = f"{zlib.crc32(repository_url.encode()):08x}{len(repository_url):04x}"
    return os.path.join(os.environ.get("TMPDIR") or "/tmp", f"pitr-{digest}.sock")


def ask(path: str, request: dict[str, Any], timeout: float = 600) -> dict[str, Any] | None:
    """The daemon's answer, or None when no daemon listens (or it went away
    before answering): the caller then does the work itself."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                part = s.recv(65536)
                if not part:
                    return None
                data += part
    except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError, BrokenPipeError):
        return None
    except OSError:
        return None
    answer = json.loads(data)
    return answer if isinstance(answer, dict) else None
