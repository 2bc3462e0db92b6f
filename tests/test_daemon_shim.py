"""The archive_command shim's question to a daemon: found by the config
file's identity, answered without parsing the config, and never trusted
once the config file or the environment differ from the daemon's."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pitr.daemon_client import config_identity, config_socket_path, json_string
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


@pytest.mark.parametrize("text", ["plain", 'quo"te', "back\\slash", "tab\there", "é\n"])
def test_json_string_is_what_json_reads_back(text: str) -> None:
    assert json.loads(json_string(text)) == text
