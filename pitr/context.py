"""What every command needs: the config, loaded once, and the repository."""

from __future__ import annotations

import os
import sys
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from pitr.config import Config, ConfigError, SourceConfig, load_config

PASSPHRASE_ENV = "PITR_PASSPHRASE"

if TYPE_CHECKING:
    from catalog.repository import OpenOptions, Repository


class AppContext:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._repo: Repository | None = None
        self._key: bytes | None = None

    @cached_property
    def config(self) -> Config:
        return load_config(self.config_path)

    def source(self, name: str | None, kind: str | None = None) -> SourceConfig:
        return self.config.source(name, kind)

    def passphrase(self) -> bytes | None:
        """The repository passphrase: $PITR_PASSPHRASE, else the config's key_file.
        Never echoed: errors name the file, not what it holds."""
        value = os.environb.get(PASSPHRASE_ENV.encode())
        if value:
            return value
        key_file = self.config.repository.key_file
        if not key_file:
            return None
        path = Path(key_file).expanduser()
        if not path.is_absolute() and self.config.path:
            path = Path(self.config.path).parent / path  # relative to the config file
        try:
            data = path.read_bytes()
            if path.stat().st_mode & 0o077:
                # Once: the passphrase is read once per process.
                sys.stderr.write(
                    f"pitr: warning: key_file {path} can be read by other users "
                    f"(chmod 600 {path})\n"
                )
        except OSError as e:
            raise ConfigError(f"key_file {path}: {e.strerror or e}") from None
        data = data.rstrip(b"\r\n")
        if not data:
            raise ConfigError(f"key_file {path}: is empty")
        return data

    def repository_key(self) -> bytes | None:
        """The key of an encrypted repository, derived from the passphrase with
        the salt and parameters the repository file holds; None without one."""
        if self._key is not None:
            return self._key
        passphrase = self.passphrase()
        if passphrase is None:
            return None
        from catalog.errors import FormatError
        from catalog.keys import key_from_meta
        from catalog.repository import read_meta

        rc = self.config.repository
        meta = read_meta(rc.url, rc.store_options)
        if meta is None:
            raise FormatError(f"{rc.url}: is not a pitr repository (run pitr init)")
        self._key = key_from_meta(meta, passphrase, rc.url)
        return self._key

    def repo(self, lazy_catalog: bool = False) -> Repository:
        """The repository; lazy_catalog opens the catalog database only when
        first used (paths that read just the store skip SQLAlchemy)."""
        if self._repo is None:
            from catalog.repository import Repository

            rc = self.config.repository
            self._repo = Repository.open(
                rc.url,
                rc.catalog,
                lazy_catalog=lazy_catalog,
                **self.open_options(self.repository_key()),
            )
        return self._repo

    def open_options(self, key: bytes | None) -> OpenOptions:
        """How the configured repository is opened (or created) with key."""
        rc = self.config.repository
        return {"store": rc.store_options, "compression_level": rc.compression_level, "key": key}

    def known_sources(self, only: str | None = None) -> list[tuple[str, str, bool]]:
        """(name, kind, configured) of the sources of the config and of the
        catalog, or of the one named `only`: what reporting commands cover."""
        from recovery.status import known_sources

        configured = {s.name: s.kind for s in self.config.sources.values()}
        sources = known_sources(self.repo(), configured, only)
        if only is not None and not sources:
            raise ConfigError(f"unknown source {only!r}: not in the config nor the catalog")
        return sources
