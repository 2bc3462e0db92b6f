"""Where `pitr serve` listens, and running it: in the foreground (the
command) or in a thread of `pitr daemon`."""

from __future__ import annotations

import ipaddress
import socket
import threading
from dataclasses import dataclass
from typing import Any

from pitr.config import ConfigError

DEFAULT_LISTEN = "127.0.0.1:9580"


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


def parse_listen(text: str, token: str | None) -> Listen:
    """HOST:PORT ([::1]:PORT for IPv6). Anything but loopback needs a token:
    the page tells whoever reaches it what is archived and from where."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"listen address {text!r} must be HOST:PORT, e.g. {DEFAULT_LISTEN}")
    if token is None and not _loopback(host):
        raise ConfigError(
            f"listening on {text} needs a token: set [serve] token or PITR_SERVE_TOKEN, "
            "or listen on a loopback address"
        )
    return Listen(host, int(port))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def bind(where: Listen) -> socket.socket:
    """The listening socket, bound here so that a taken port is one clear line."""
    family = socket.AF_INET6 if ":" in where.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((where.host, where.port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {where.host}:{where.port}: {e.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _server(asgi: Any) -> Any:
    import uvicorn

    return uvicorn.Server(uvicorn.Config(asgi, log_level="warning", access_log=False))


def serve_forever(asgi: Any, sock: socket.socket) -> None:
    """In the foreground until SIGINT or SIGTERM (uvicorn handles both)."""
    _server(asgi).run(sockets=[sock])


class BackgroundServer:
    """The page served from a thread of the daemon; stop() ends it."""

    def __init__(self, asgi: Any, where: Listen) -> None:
        self.server = _server(asgi)
        sock = bind(where)
        # uvicorn installs no signal handlers outside the main thread.
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="pitr-serve", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
