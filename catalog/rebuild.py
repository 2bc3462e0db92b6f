"""Recreate the catalog database from the object store alone.

Every fact the catalog holds was first written to the store as a record
(records/<source>/<kind>/<name>); catalog.catchup turns each back into rows.
Objects are listed from the store.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import inspect

from catalog.catchup import Filled, fill, set_watermark
from catalog.db.models import Base, StoredObject
from catalog.repository import Repository


def catalog_is_empty(repo: Repository) -> bool:
    with repo.catalog.engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
    if "sources" not in tables:
        return True
    with repo.catalog.session() as s:
        return (
            s.query(StoredObject).first() is None
            and s.execute(Base.metadata.tables["sources"].select().limit(1)).first() is None
        )


def reset_catalog(repo: Repository) -> None:
    """Drop every table and create the schema again."""
    Base.metadata.drop_all(repo.catalog.engine)
    with repo.catalog.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    repo.catalog.upgrade()


def rebuild_catalog(repo: Repository) -> Filled:
    """Fill an empty catalog from the store, and start its journal watermark
    at the instant the filling began."""
    began = datetime.now(UTC)
    with repo.catalog.session() as s:
        result = fill(repo, s, fresh=True)
        set_watermark(s, began)
    return result
