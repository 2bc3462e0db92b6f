"""Finding and reading the TOML file: kept lean (no dataclasses, no pathlib)
because the archive_command fast path uses it once per WAL segment."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing itself costs milliseconds at every start
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


class ConfigError(Exception):
    """The configuration is missing, unreadable or wrong (exit 2)."""


def find_config_path(explicit: str | None, env: Mapping[str, str]) -> str | None:
    """--config FILE, else $PITR_CONFIG, else ./pitr.toml if it exists."""
    if explicit:
        return explicit
    if env.get("PITR_CONFIG"):
        return env["PITR_CONFIG"]
    return "pitr.toml" if os.path.exists("pitr.toml") else None


def read_toml(path: str) -> dict[str, Any]:
    import tomllib

    try:
        with open(path, "rb") as f:
            raw = f.read()
        return tomllib.loads(raw.decode())
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise ConfigError(
            f"config {path}: line {line}, column {column}: byte {raw[e.start]:#04x} "
            "is not UTF-8 (TOML files are UTF-8)"
        ) from None
    except FileNotFoundError:
        raise ConfigError(f"config {path}: no such file") from None
    except OSError as e:
        raise ConfigError(f"config {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config {path}: {e}") from None


def normalise_repo_url(url: str) -> str:
    """A bare path means a local directory."""
    if "://" not in url:
        from urllib.parse import quote

        return "file://" + quote(os.path.abspath(url))
    return url


def repository_url(data: dict[str, Any], env: Mapping[str, str]) -> str | None:
    repo = data.get("repository")
    url = env.get("PITR_REPO") or (repo.get("url") if isinstance(repo, dict) else None)
    return normalise_repo_url(str(url)) if url else None
