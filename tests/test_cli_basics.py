"""The installed `pitr` console script, run as a subprocess."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pitr import __version__

PITR = Path(sys.executable).parent / "pitr"

# The command table of docs/reference.md.
COMMANDS = [
    "init",
    "wal-push",
    "archive-command",
    "wal-fetch",
    "backup",
    "tail",
    "daemon",
    "mark",
    "restore",
    "export",
    "info",
    "report",
    "serve",
    "check",
    "verify",
    "expire",
    "catalog",
    "demo",
]


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PITR_")}
    return subprocess.run(
        [str(PITR), *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def write_config(path: Path, repo: Path) -> Path:
    path.write_text(
        f'[repository]\nurl = "{repo.as_uri()}"\n\n'
        '[sources.db]\nkind = "postgres"\ndsn = "host=/tmp"\npgdata = "/tmp/pgdata"\n'
    )
    return path


def test_version(tmp_path: Path) -> None:
    result = run("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert __version__ in result.stdout
    assert result.stdout.startswith("pitr")


def test_help_lists_every_command(tmp_path: Path) -> None:
    result = run("--help", cwd=tmp_path)
    assert result.returncode == 0
    listed = [
        line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines() if line.strip()
    ]
    assert listed == COMMANDS
    assert "--config" in result.stdout


def test_init_creates_repository_and_catalog_and_is_idempotent(tmp_path: Path) -> None:
    repo = tmp_path / "new" / "repo"
    config = write_config(tmp_path / "pitr-test.toml", repo)
    first = run("--config", str(config), "init", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout
    meta = json.loads((repo / "pitr-repository.json").read_text())
    assert meta["format_version"] == 1
    assert (repo / "catalog.db").is_file()

    second = run("--config", str(config), "init", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "already initialised" in second.stdout
    assert json.loads((repo / "pitr-repository.json").read_text()) == meta


def test_init_records_the_configured_sources(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    config = write_config(tmp_path / "c.toml", repo)
    assert run("--config", str(config), "init", cwd=tmp_path).returncode == 0
    with sqlite3.connect(repo / "catalog.db") as db:
        rows = db.execute("SELECT name, kind FROM sources").fetchall()
    assert rows == [("db", "postgres")]


def test_pitr_repo_alone_is_enough_for_init(tmp_path: Path) -> None:
    cwd = tmp_path / "empty"
    cwd.mkdir()
    repo = tmp_path / "via-env"
    result = run("init", cwd=cwd, env={"PITR_REPO": str(repo)})
    assert result.returncode == 0, result.stderr
    assert (repo / "pitr-repository.json").is_file()
    assert (repo / "catalog.db").is_file()
    assert list(cwd.iterdir()) == []


def test_pitr_config_and_cwd_config_are_found(tmp_path: Path) -> None:
    via_env = write_config(tmp_path / "env.toml", tmp_path / "repo-env")
    result = run("init", cwd=tmp_path, env={"PITR_CONFIG": str(via_env)})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "repo-env" / "pitr-repository.json").is_file()
    cwd = tmp_path / "work"
    cwd.mkdir()
    write_config(cwd / "pitr.toml", tmp_path / "repo-cwd")
    result = run("init", cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "repo-cwd" / "pitr-repository.json").is_file()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('[repository\nurl = "/x"\n', "bad.toml"),  # TOML syntax error
        ('[repository]\nurl = "/x"\ncolour = "blue"\n', "unknown key 'colour'"),
        ('[repository]\nurl = "s3://bucket/p"\n', "catalog is required"),
        ('[repository]\nurl = "/x"\n[sources.db]\nkind = "oracle"\n', "kind must be"),
        (None, "no such file"),  # the file named by --config is missing
    ],
    ids=["syntax", "unknown-key", "s3-without-catalog", "wrong-kind", "missing-file"],
)
def test_broken_config_is_one_line_and_exit_2(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    config = tmp_path / "bad.toml"
    if content is not None:
        config.write_text(content)
    result = run("--config", str(config), "init", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pitr: ")
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_no_config_at_all_is_exit_2(tmp_path: Path) -> None:
    result = run("init", cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "no configuration" in result.stderr


def test_unknown_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run("frobnicate", cwd=tmp_path)
    assert result.returncode == 2
    assert "frobnicate" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("catalog", "code", "expected"),
    [
        ("not a url", 2, "not a database URL"),
        ("postgresql://pitr:hunter2@127.0.0.1:1/pitr", 5, "127.0.0.1"),
    ],
    ids=["bad-url", "unreachable"],
)
def test_catalog_problems_are_one_line(
    tmp_path: Path, catalog: str, code: int, expected: str
) -> None:
    env = {"PITR_REPO": str(tmp_path / "repo"), "PITR_CATALOG": catalog}
    result = run("init", cwd=tmp_path, env=env)
    assert result.returncode == code
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "hunter2" not in result.stderr
