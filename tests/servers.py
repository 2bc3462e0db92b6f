"""Real servers for tests: PostgreSQL 15, redis-server and moto_server.

Each server runs on 127.0.0.1 with a free port and keeps its files in its
own directory under one per-process base directory (/tmp/pitr-tests-XXXX,
mode 0755, so that the postgres OS user can reach it). Everything started
is registered and stopped at interpreter exit as a last resort; the
fixtures in conftest.py stop servers as soon as a test ends.

Tests import from here; the code lives in harness.py (what the servers
share, and `pitr` itself), pgserver.py, redisserver.py and s3server.py.
"""

from tests.harness import (
    PG_BIN,
    PG_USER,
    PITR_BIN,
    VENV_BIN,
    PitrFailed,
    ServerError,
    alive,
    as_user,
    base_dir,
    children,
    clean_env,
    free_port,
    new_dir,
    postgres_ids,
    remove_base_dir,
    run_pitr,
    tail,
    wait_until,
)
from tests.pgserver import ClusterFactory, PostgresCluster
from tests.redisserver import RedisFactory, RedisServer
from tests.s3server import AWS_TEST_ENV, S3Bucket, S3Server

__all__ = [
    "AWS_TEST_ENV",
    "PG_BIN",
    "PG_USER",
    "PITR_BIN",
    "VENV_BIN",
    "ClusterFactory",
    "PitrFailed",
    "PostgresCluster",
    "RedisFactory",
    "RedisServer",
    "S3Bucket",
    "S3Server",
    "ServerError",
    "alive",
    "as_user",
    "base_dir",
    "children",
    "clean_env",
    "free_port",
    "new_dir",
    "postgres_ids",
    "remove_base_dir",
    "run_pitr",
    "tail",
    "wait_until",
]
