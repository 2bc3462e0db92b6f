"""What every command needs: the config, loaded once, and the repository."""

from __future__ import annotations

import os
from functools import cached_property
from typing import TYPE_CHECKING

from pitr.config import Config, SourceConfig, load_config

if TYPE_CHECKING:
    from catalog.repository import Repository


class AppContext:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._repo: Repository | None = None

    @cached_property
    def config(self) -> Config:
        return load_config(self.config_path)

    def source(self, name: str | None, kind: str | None = None) -> SourceConfig:
        return self.config.source(name, kind)

    def repository_key(self) -> bytes | None:
        """The encryption key, when the repository is encrypted (issue: trust)."""
        return None

    def repo(self) -> Repository:
        if self._repo is None:
            from catalog.repository import Repository

            rc = self.config.repository
            self._repo = Repository.open(
                rc.url,
                rc.catalog,
                endpoint_url=rc.endpoint_url,
                compression_level=rc.compression_level,
                key=self.repository_key(),
            )
        return self._repo


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")
