"""The TOML configuration, parsed once into typed values.

Found by --config FILE, else $PITR_CONFIG, else ./pitr.toml. PITR_REPO and
PITR_CATALOG override the two repository keys.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from catalog.store import StoreOptions, schemes
from catalog.store.registry import one_of
from pitr.configfile import ConfigError, find_config_path, read_toml, repository_url
from pitr.kinds.base import SourceConfig
from pitr.timeparse import parse_duration

__all__ = ["Config", "ConfigError", "RepositoryConfig", "SourceConfig", "load_config"]


@dataclass(frozen=True)
class RepositoryConfig:
    url: str
    catalog: str
    endpoint_url: str | None = None
    compression_level: int = 3
    key_file: str | None = None

    @property
    def store_options(self) -> StoreOptions:
        """What the store backend is given besides the URL."""
        return StoreOptions(endpoint_url=self.endpoint_url)


@dataclass(frozen=True)
class Thresholds:
    """When a source counts as behind: report rpo, /healthz and the page."""

    max_lag: timedelta | None = None
    max_backup_age: timedelta | None = None


@dataclass(frozen=True)
class ServeConfig:
    listen: str | None = None  # None: pitr daemon serves no page
    token: str | None = None


@dataclass(frozen=True)
class Config:
    repository: RepositoryConfig
    sources: dict[str, SourceConfig] = field(default_factory=dict)
    path: str | None = None
    report: Thresholds = field(default_factory=Thresholds)
    serve: ServeConfig = field(default_factory=ServeConfig)

    def thresholds(self, name: str) -> Thresholds:
        """A source's own limits, else the [report] table's."""
        src = self.sources.get(name)
        own = Thresholds() if src is None else Thresholds(src.max_lag, src.max_backup_age)
        return Thresholds(
            own.max_lag or self.report.max_lag,
            own.max_backup_age or self.report.max_backup_age,
        )

    def source(self, name: str | None, kind: str | None = None) -> SourceConfig:
        """The named source, or the only one (of kind) when name is None."""
        if name is not None:
            try:
                src = self.sources[name]
            except KeyError:
                known = ", ".join(sorted(self.sources)) or "none"
                raise ConfigError(f"unknown source {name!r} (configured: {known})") from None
            if kind is not None and src.kind != kind:
                raise ConfigError(f"source {name!r} is a {src.kind} source, not {kind}")
            return src
        candidates = [s for s in self.sources.values() if kind is None or s.kind == kind]
        if len(candidates) == 1:
            return candidates[0]
        what = f"{kind} sources" if kind else "sources"
        if not candidates:
            raise ConfigError(f"the configuration has no {what}")
        raise ConfigError(f"the configuration has {len(candidates)} {what}: name one with --source")


# Source names become parts of object keys and file names: keep them plain.
SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
REPO_KEYS = {"url", "catalog", "endpoint_url", "compression_level", "key_file"}
THRESHOLD_KEYS = ("max_lag", "max_backup_age")
SERVE_KEYS = {"listen", "token"}


def load_config(explicit: str | None = None, env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    path = find_config_path(explicit, env)
    data: dict[str, Any] = {}
    if path is not None:
        data = read_toml(path)
    elif not env.get("PITR_REPO"):
        raise ConfigError(
            "no configuration: pass --config FILE, set PITR_CONFIG or PITR_REPO, "
            "or create ./pitr.toml"
        )
    return parse_config(data, env, path)


def parse_config(data: dict[str, Any], env: Mapping[str, str], path: str | None) -> Config:
    where = f"config {path}" if path else "config"
    unknown = set(data) - {"repository", "sources", "report", "serve"}
    if unknown:
        raise ConfigError(f"{where}: unknown section {sorted(unknown)[0]!r}")
    repo = _table(data.get("repository", {}), f"{where}: [repository]")
    _no_unknown(repo, REPO_KEYS, f"{where}: [repository]")
    url = repository_url(data, env)
    if not url:
        raise ConfigError(f"{where}: [repository] url is required")
    if urlparse(url).scheme not in schemes():
        raise ConfigError(f"{where}: repository url {url!r} must be {_repository_forms()}")
    catalog = env.get("PITR_CATALOG") or repo.get("catalog") or _default_catalog(url, where)
    level = repo.get("compression_level", 3)
    if not isinstance(level, int) or not 1 <= level <= 22:
        raise ConfigError(f"{where}: [repository] compression_level must be 1..22")
    repository = RepositoryConfig(
        url=url,
        catalog=str(catalog),
        endpoint_url=repo.get("endpoint_url"),
        compression_level=level,
        key_file=repo.get("key_file"),
    )
    sources = {
        name: _parse_source(name, _table(raw, f"{where}: [sources.{name}]"), where)
        for name, raw in _table(data.get("sources", {}), f"{where}: [sources]").items()
    }
    report = _table(data.get("report", {}), f"{where}: [report]")
    _no_unknown(report, set(THRESHOLD_KEYS), f"{where}: [report]")
    return Config(
        repository,
        sources,
        path,
        Thresholds(**_durations(report, THRESHOLD_KEYS, f"{where}: [report]")),
        _parse_serve(_table(data.get("serve", {}), f"{where}: [serve]"), env, where),
    )


def _parse_serve(raw: dict[str, Any], env: Mapping[str, str], where: str) -> ServeConfig:
    at = f"{where}: [serve]"
    _no_unknown(raw, SERVE_KEYS, at)
    for key in SERVE_KEYS:
        if key in raw and (not isinstance(raw[key], str) or not raw[key]):
            raise ConfigError(f"{at}: {key} must be a non-empty string")
    return ServeConfig(raw.get("listen"), env.get("PITR_SERVE_TOKEN") or raw.get("token"))


def _durations(raw: dict[str, Any], keys: tuple[str, ...], at: str) -> dict[str, timedelta]:
    """The duration-valued keys of a table that are set, parsed."""
    found = {}
    for key in keys:
        if key in raw:
            try:
                found[key] = parse_duration(str(raw[key]))
            except ValueError as e:
                raise ConfigError(f"{at}: {key}: {e}") from None
    return found


def _parse_source(name: str, raw: dict[str, Any], where: str) -> SourceConfig:
    from dataclasses import replace

    from pitr import kinds

    at = f"{where}: [sources.{name}]"
    if not SOURCE_NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: source name {name!r} must be 1 to 63 letters, digits, '_', '.' or '-', "
            "beginning with a letter or digit"
        )
    if raw.get("kind") not in kinds.names():
        known = " or ".join(repr(k) for k in kinds.names())
        raise ConfigError(f"{at}: kind must be {known}")
    kind = kinds.get(raw["kind"])
    _no_unknown(raw, set(kind.config.KEYS), at)
    common: dict[str, Any] = _durations(raw, ("backup_every", *THRESHOLD_KEYS), at)
    return replace(kind.parse(name, raw, at), **common)


def _table(value: Any, at: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{at} must be a table")
    return value


def _no_unknown(table: dict[str, Any], allowed: set[str], at: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{at}: unknown key {key!r} (known: {', '.join(sorted(allowed))})")


def _repository_forms() -> str:
    """'a path, file://, s3:// or memory://': the registered store schemes."""
    return one_of(["a path", *(f"{scheme}://" for scheme in schemes())])


def _default_catalog(url: str, where: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return f"sqlite:///{Path(unquote(parsed.path)) / 'catalog.db'}"
    raise ConfigError(
        f"{where}: [repository] catalog is required for an {parsed.scheme} repository"
    )
