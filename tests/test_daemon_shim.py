"""The archive_command shim's question to a daemon: found by the config
file's identity, answered without parsing the config, and never trusted
once the config file or the environment differ from the daemon's."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pitr.configfile import read_toml, repository_url
from pitr.daemon_client import config_identity, config_socket_path, json_string, socket_path
from pitr.walpush_door import exit_with
from tests.servers import PITR_BIN, clean_env


class FakeDaemon:
    """A socket that records each request line and gives a fixed answer."""

    def __init__(self, path: str, answer: bytes) -> None:
        self.path = path
        self.answer = answer
        self.requests: list[dict[str, object]] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as f:
                self.requests.append(json.loads(f.readline()))
                conn.sendall(self.answer)

    def close(self) -> None:
        self.server.close()
        os.unlink(self.path)


@pytest.fixture
def setup(tmp_path: Path, monkeypatch) -> Iterator[tuple[Path, dict[str, str]]]:
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where sockets are named, here and in pitr
    config = tmp_path / "pitr.toml"
    config.write_text(
        f'[repository]\nurl = "{tmp_path / "repo"}"\n'
        '[sources.db]\nkind = "postgres"\ndsn = "host=/nowhere"\npgdata = "/nowhere"\n'
    )
    env = clean_env({"TMPDIR": str(tmp_path), "PITR_REPO": None, "PITR_CATALOG": None})
    yield config, env


def wal_push(config: Path, env: dict[str, str], path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PITR_BIN), "--config", str(config), "wal-push", path],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_daemon_of_the_same_config_answers_without_the_config_being_parsed(setup) -> None:
    config, env = setup
    identity = config_identity(str(config), env)
    assert identity is not None
    fake = FakeDaemon(config_socket_path(identity), b'{"ok": true}\n')
    try:
        # The file does not exist: only the daemon's answer can make this exit 0.
        result = wal_push(config, env, "pg_wal/000000010000000000000007")
    finally:
        fake.close()
    assert result.returncode == 0, result.stderr
    [request] = fake.requests
    assert request["op"] == "push"
    assert request["config"] == identity
    assert "source" not in request  # the daemon picks its only postgres source
    assert request["path"] == os.path.abspath("pg_wal/000000010000000000000007")


def test_a_refusal_from_the_daemon_is_reported_with_its_exit_code(setup) -> None:
    config, env = setup
    identity = config_identity(str(config), env)
    assert identity is not None
    answer = json.dumps({"ok": False, "exit_code": 4, "error": "different content"})
    fake = FakeDaemon(config_socket_path(identity), answer.encode() + b"\n")
    try:
        result = wal_push(config, env, "/x/000000010000000000000007")
    finally:
        fake.close()
    assert result.returncode == 4
    assert result.stderr.strip() == "pitr: different content"


def test_an_edited_config_or_another_environment_is_not_answered_by_the_old_daemon(
    setup,
) -> None:
    config, env = setup
    identity = config_identity(str(config), env)
    assert identity is not None
    fake = FakeDaemon(config_socket_path(identity), b'{"ok": true}\n')
    try:
        other_env = {**env, "PITR_REPO": str(config.parent / "elsewhere")}
        assert config_identity(str(config), other_env) != identity
        result = wal_push(config, other_env, "/x/000000010000000000000007")
        assert result.returncode != 0  # pushed directly: no such file

        config.write_text(config.read_text() + "\n# edited\n")
        assert config_identity(str(config), env) != identity
        result = wal_push(config, env, "/x/000000010000000000000007")
        assert result.returncode != 0
    finally:
        fake.close()
    assert fake.requests == []


# What one `pitr wal-push` process connects to and imports, seen from inside it:
# an audit hook records every socket connect, and the report is written at exit.
PROBE = """
import atexit, json, sys
report, *argv = sys.argv[1:]
connects = []
sys.addaudithook(
    lambda event, args: connects.append(str(args[1])) if event == "socket.connect" else None
)
def write_report():
    heavy = [m for m in ("click", "sqlalchemy", "boto3") if m in sys.modules]
    with open(report, "w") as f:
        json.dump({"connects": connects, "heavy": heavy}, f)
atexit.register(write_report)
sys.argv = ["pitr", *argv]
from pitr.entry import main
main()
"""


def probed_push(
    config: Path, env: dict[str, str], path: str
) -> tuple[subprocess.CompletedProcess[str], list[str], list[str]]:
    """wal-push through the console script's entry point: (result, the
    sockets it connected to, which of click, sqlalchemy and boto3 it imported)."""
    report = config.parent / "probe.json"
    argv = [sys.executable, "-c", PROBE, str(report), "--config", str(config), "wal-push", path]
    root = Path(__file__).resolve().parent.parent  # where tests/ and the packages are
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=root)
    seen = json.loads(report.read_text())
    return result, seen["connects"], seen["heavy"]


def stale_socket(path: str) -> None:
    """The socket file a daemon killed with SIGKILL leaves: nobody listens on it."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()


def test_without_a_daemon_a_push_connects_to_nothing(setup) -> None:
    config, env = setup
    result, connects, _ = probed_push(config, env, "/x/000000010000000000000007")
    assert result.returncode == 2, result.stderr  # pushed itself: there is no repository
    assert "is not a pitr repository" in result.stderr
    assert connects == []


def linked_name(config: Path, env: dict[str, str]) -> str:
    """The name a daemon of this config file, in this environment, links to its socket."""
    identity = config_identity(str(config), env)
    assert identity is not None
    return config_socket_path(identity)


def test_the_sockets_of_a_dead_daemon_are_tried_once_in_all(setup) -> None:
    config, env = setup
    by_url = socket_path(repository_url(read_toml(str(config)), env) or "")
    stale_socket(by_url)
    os.symlink(by_url, linked_name(config, env))  # as the daemon links its second name
    result, connects, _ = probed_push(config, env, "/x/000000010000000000000007")
    assert result.returncode == 2, result.stderr
    # One connect, refused: not again by URL (the same socket), nor by the click command.
    assert connects == [linked_name(config, env)]


def test_a_daemon_answers_the_fast_path_without_click_sqlalchemy_or_boto3(setup) -> None:
    config, env = setup
    fake = FakeDaemon(linked_name(config, env), b'{"ok": true}\n')
    try:
        result, connects, heavy = probed_push(config, env, "/x/000000010000000000000007")
    finally:
        fake.close()
    assert result.returncode == 0, result.stderr
    assert (connects, heavy) == ([linked_name(config, env)], [])


def test_a_daemon_of_another_config_file_answers_by_the_repository_url(setup) -> None:
    config, env = setup
    url = repository_url(read_toml(str(config)), env)
    assert url is not None
    answer = json.dumps({"ok": False, "exit_code": 4, "error": "different content"})
    fake = FakeDaemon(socket_path(url), answer.encode() + b"\n")
    try:
        result, connects, heavy = probed_push(config, env, "/x/000000010000000000000007")
    finally:
        fake.close()
    assert result.returncode == 4
    assert result.stderr.strip() == "pitr: different content"
    assert connects == [socket_path(url)] and heavy == []
    [request] = fake.requests
    assert request == {
        "op": "push",
        "repository": url,
        "source": "db",
        "path": "/x/000000010000000000000007",
    }


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ({"ok": True}, 0),
        ({"ok": False, "exit_code": 4, "error": "x"}, 4),
        ({"ok": False, "error": "x"}, 5),
        ({"ok": False, "exit_code": 0, "error": "x"}, 5),  # never 0 unless durable
        ({"ok": False, "exit_code": 128, "error": "x"}, 5),  # never above 125
        ({"ok": "yes"}, 5),
    ],
)
def test_an_answer_becomes_an_archive_command_exit_code(
    answer: dict[str, object], code: int
) -> None:
    with pytest.raises(SystemExit) as info:
        exit_with(answer)
    assert info.value.code == code


@pytest.mark.parametrize("text", ["plain", 'quo"te', "back\\slash", "tab\there", "é\n"])
def test_json_string_is_what_json_reads_back(text: str) -> None:
    assert json.loads(json_string(text)) == text
