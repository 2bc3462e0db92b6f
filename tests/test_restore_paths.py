"""A manifest is data from the store: a path in it that tries to leave the
target directory is refused before anything is written."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from catalog.db.models import Backup
from catalog.errors import IntegrityError
from catalog.queries import ensure_source
from catalog.repository import Repository
from recovery.pgrestore import restore_postgres
from recovery.planner import BackupPoint, PgPlan

NOW = datetime(2025, 1, 16, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("path", ["../escaped", "/etc/escaped", "base/../../escaped", "a\\..\\b"])
def test_a_manifest_path_leaving_the_target_is_refused(tmp_path: Path, path: str) -> None:
    repo, _ = Repository.init((tmp_path / "repo").as_uri(), f"sqlite:///{tmp_path}/catalog.db")
    data = repo.put_chunk(b"not for outside")
    manifest = {
        "entries": [
            {"path": "PG_VERSION", "kind": "file", "mode": 0o600, "size": 0, "chunks": []},
            {"path": path, "kind": "file", "mode": 0o600, "size": 15, "chunks": [data.oid]},
        ],
        "backup_label": "",
        "tablespace_map": "",
        "owner": "",
    }
    oid = repo.put_chunk(json.dumps(manifest).encode()).oid
    with repo.catalog.session() as s:
        src = ensure_source(s, "db", "postgres")
        s.add(
            Backup(
                id="b1",
                source_id=src.id,
                kind="pg_base",
                started_at=NOW,
                finished_at=NOW,
                size_bytes=15,
                stored_bytes=15,
                manifest_oid=oid,
            )
        )
    point = BackupPoint("b1", 1, 0x2000028, 0x2000100, NOW)
    plan = PgPlan(NOW, 1, point, (("000000010000000000000002", NOW),), 1, NOW, NOW)
    target = tmp_path / "deep" / "restored"
    with pytest.raises(IntegrityError, match="leaves the target directory"):
        restore_postgres(repo, plan, target, restore_command="true", stop_at_target=False)
    assert not target.exists()
    assert not (tmp_path / "deep" / "escaped").exists() and not (tmp_path / "escaped").exists()
    leftovers = list((tmp_path / "deep").glob("*")) + list((tmp_path / "deep").glob(".*"))
    assert leftovers == []  # no staging directory left behind either
