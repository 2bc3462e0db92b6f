"""Opening the catalog database and keeping its schema at the newest migration."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from catalog.errors import FormatError, StorageError

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
HEAD_REVISION = "0004"
# Revisions this pitr brings forward by itself when it opens the catalog:
# their migrations only add tables.
OLDER_REVISIONS = ("0001", "0002", "0003")
UPGRADE_WAIT = 15.0  # seconds a losing concurrent upgrade waits for the winner
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def brief(error: BaseException) -> str:
    """The driver's message on one line (libpq's span several)."""
    return " ".join(str(getattr(error, "orig", None) or error).split())


# A catalog host that accepts connections and never answers must not hold
# wal-push (and so PostgreSQL's archiver) forever: libpq's connect_timeout
# bounds the whole handshake, tcp_user_timeout a connection whose peer went
# away. Parameters given in the URL's query win.
PG_NETWORK_DEFAULTS = {"connect_timeout": 10, "tcp_user_timeout": 30_000, "keepalives_idle": 30}


def pg_timeouts(given: Mapping[str, Any]) -> dict[str, Any]:
    """The network defaults a libpq connection lacks among the parameters given."""
    return {k: v for k, v in PG_NETWORK_DEFAULTS.items() if k not in given}


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise FormatError(
            "catalog: the url is not a database URL "
            "(e.g. sqlite:////var/lib/pitr/catalog.db or postgresql://user@host/db)"
        ) from None
    safe = parsed.render_as_string(hide_password=True)
    try:
        if parsed.get_backend_name() == "sqlite":
            path = parsed.database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        return create_engine(parsed, pool_pre_ping=True, connect_args=pg_timeouts(parsed.query))
    except OSError as e:
        raise StorageError(f"catalog {safe}: {e.strerror or e}") from e
    except (ArgumentError, ImportError) as e:
        raise FormatError(f"catalog {safe}: unsupported database ({brief(e)})") from e


def alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


class Catalog:
    """Sessions on the catalog database. Call upgrade() once at init."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite takes one writer at a time and makes the others sleep and retry;
        # threads of one process (the daemon's pushers) queue here instead.
        self._local_writer = threading.RLock() if url.startswith("sqlite") else None

    def revision(self) -> str | None:
        try:
            with self.engine.connect() as conn:
                if not inspect(conn).has_table("alembic_version"):
                    return None
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except OperationalError as e:
            raise StorageError(f"catalog {self.safe_url}: {brief(e)}") from e

    def upgrade(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        if self.revision() == HEAD_REVISION:
            return
        from alembic import command

        try:
            command.upgrade(alembic_config(self.engine), "head")
        except SQLAlchemyError as e:
            # Another process may be creating the same schema (two `pitr init`
            # at once): its success is ours too.
            deadline = time.monotonic() + UPGRADE_WAIT
            while time.monotonic() < deadline:
                if self.revision() == HEAD_REVISION:
                    return
                time.sleep(0.2)
            raise StorageError(f"catalog {self.safe_url}: upgrade failed: {brief(e)}") from e

    def knows_a_source(self) -> bool:
        with self.session() as s:
            return holds_a_source(s)

    def check_schema(self) -> None:
        rev = self.revision()
        if rev in OLDER_REVISIONS:
            self.upgrade()
            rev = self.revision()
        if rev is None:
            raise FormatError(f"catalog {self.safe_url}: has no schema (run pitr init)")
        if rev != HEAD_REVISION:
            raise FormatError(
                f"catalog {self.safe_url}: schema revision {rev} is not the one this pitr "
                f"knows ({HEAD_REVISION}); upgrade pitr or run pitr init"
            )

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden, for messages."""
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error."""
        with self._local_writer or contextlib.nullcontext():
            yield from self._session()

    def _session(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as e:
            session.rollback()
            raise StorageError(f"catalog {self.safe_url}: {brief(e)}") from e
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self) -> None:
        self.engine.dispose()


def holds_a_source(s: Session) -> bool:
    from sqlalchemy import select

    from catalog.db.models import Source

    return s.scalars(select(Source.id).limit(1)).first() is not None
