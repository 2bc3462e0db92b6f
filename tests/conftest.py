"""Fixtures that give tests real servers: PostgreSQL 15, Redis and S3 (moto).

Servers are stopped and their directories removed when the test ends,
whether it passed or not. The classes live in tests/servers.py, with
run_pitr() for running the command line.
"""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

from tests.pgsupport import Archived, start_archiving
from tests.servers import (
    AWS_TEST_ENV,
    ClusterFactory,
    PostgresCluster,
    RedisFactory,
    RedisServer,
    S3Bucket,
    S3Server,
    new_dir,
    remove_base_dir,
)


@pytest.fixture(scope="session", autouse=True)
def _test_environment() -> Iterator[None]:
    """Dummy AWS credentials for the whole run and no stray pitr settings.

    Set before any server starts, so that an archive_command run by a test
    cluster inherits them too; nothing can reach a real AWS account.
    """
    mp = pytest.MonkeyPatch()
    for key, value in AWS_TEST_ENV.items():
        mp.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        mp.delenv(key, raising=False)
    for key in ("PITR_CONFIG", "PITR_REPO", "PITR_CATALOG"):
        mp.delenv(key, raising=False)
    try:
        yield
    finally:
        mp.undo()
        remove_base_dir()


class CleansUp(Protocol):
    def cleanup(self) -> None: ...


F = TypeVar("F", bound=CleansUp)


def cleaned_up(factory: F) -> Iterator[F]:
    """A fixture's value that is cleaned up when the test ends, however it ends."""
    try:
        yield factory
    finally:
        factory.cleanup()


@pytest.fixture
def pg_cluster_factory() -> Iterator[ClusterFactory]:
    """Call it for more clusters: factory(start=True, archive_command=..., settings=...);
    factory.from_pgdata(path) adopts a restored data directory."""
    yield from cleaned_up(ClusterFactory())


@pytest.fixture
def pg_cluster(pg_cluster_factory: ClusterFactory) -> PostgresCluster:
    """A started cluster: archive_mode on, archive_command /bin/true."""
    return pg_cluster_factory()


@pytest.fixture
def redis_factory() -> Iterator[RedisFactory]:
    yield from cleaned_up(RedisFactory())


@pytest.fixture
def redis_server(redis_factory: RedisFactory) -> RedisServer:
    return redis_factory()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One moto_server for the whole run; tests keep apart by bucket."""
    server = S3Server()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> S3Bucket:
    """A fresh, empty bucket on the session's moto_server."""
    name = f"pitr-test-{uuid.uuid4().hex[:12]}"
    s3_server.make_bucket(name)
    return S3Bucket(endpoint_url=s3_server.endpoint_url, bucket=name, server=s3_server)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory every OS user can write (mode 0777): a repository that
    archive_command, running as postgres, can use. Removed after the test."""
    path = new_dir("shared-", 0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pitr_bin() -> Path:
    """The `pitr` console script of the virtual environment running the tests."""
    return Path(sys.executable).parent / "pitr"


@dataclass(frozen=True)
class RepositorySpec:
    """Where a test's repository and catalog live; section(base) is its TOML."""

    kind: str
    url: str | None = None  # None: a directory under the test's base
    catalog: str | None = None
    endpoint_url: str | None = None

    def section(self, base: Path) -> str:
        lines = [f'url = "{self.url or base / "repo"}"']
        if self.catalog:
            lines.append(f'catalog = "{self.catalog}"')
        if self.endpoint_url:
            lines.append(f'endpoint_url = "{self.endpoint_url}"')
        return "[repository]\n" + "\n".join(lines) + "\n"


@pytest.fixture(params=["local", "s3-pgcatalog"])
def repository(request: pytest.FixtureRequest) -> RepositorySpec:
    """The end-to-end restore tests run on both: a local directory with its
    SQLite catalog, and S3 (moto) with the catalog in a PostgreSQL server."""
    if request.param == "local":
        return RepositorySpec("local")
    bucket = request.getfixturevalue("s3_bucket")
    catalog_server = request.getfixturevalue("pg_cluster_factory")()
    catalog = (
        f"postgresql+psycopg://postgres@/postgres?host={catalog_server.socket_dir}"
        f"&port={catalog_server.port}"
    )
    return RepositorySpec(
        "s3-pgcatalog", f"s3://{bucket.bucket}/pitr", catalog, bucket.endpoint_url
    )


@pytest.fixture
def archived(
    pg_cluster: PostgresCluster, pg_cluster_factory: ClusterFactory, shared_tmp: Path
) -> Archived:
    """A started cluster archiving into a local repository through pitr, with
    a marker table (tests/pgsupport.py)."""
    return start_archiving(pg_cluster, shared_tmp, pg_cluster_factory)
