"""Encryption at rest: key derivation, the repository's key checks, and an
encrypted repository fed by a real PostgreSQL 15 through the console script."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from catalog.codec import FLAG_AESGCM
from catalog.errors import FormatError, KeyError_
from catalog.keys import (
    KdfParams,
    check_key,
    derive_key,
    key_from_meta,
    new_encryption,
    new_params,
)
from catalog.repository import REPO_CONFIG_KEY, Repository, object_key
from tests.pgsupport import Archived, midpoint, open_dir
from tests.servers import PITR_BIN, PostgresCluster, run_pitr

PASSPHRASE = "correct horse battery staple " + uuid.uuid4().hex
FAST = {"n": 1 << 10, "r": 8, "p": 1}  # unit tests need no memory-hardness


@pytest.fixture(autouse=True)
def _no_passphrase_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PITR_PASSPHRASE", raising=False)


def fast_encryption(passphrase: bytes) -> tuple[dict[str, object], bytes]:
    return new_encryption(passphrase, new_params(**FAST))


# -- catalog/keys.py -------------------------------------------------------------


def test_derivation_is_deterministic_for_salt_and_params() -> None:
    params = new_params(**FAST)
    again = KdfParams.from_json(params.to_json(), "test")
    assert again == params
    assert derive_key(b"pw", params) == derive_key(b"pw", again)
    assert len(derive_key(b"pw", params)) == 32


def test_salt_params_and_passphrase_each_change_the_key() -> None:
    params = new_params(**FAST)
    key = derive_key(b"pw", params)
    assert derive_key(b"pw", new_params(**FAST)) != key  # another random salt
    assert derive_key(b"pw", KdfParams(params.salt, n=1 << 11)) != key
    assert derive_key(b"pW", params) != key


def test_check_value_tells_a_wrong_key_and_a_missing_one() -> None:
    encryption, key = fast_encryption(b"pw")
    meta = {"format_version": 1, "encryption": encryption}
    check_key(meta, key, "repo")  # the right key passes
    assert key_from_meta(meta, b"pw", "repo") == key
    with pytest.raises(KeyError_, match="^wrong passphrase for repository repo$"):
        key_from_meta(meta, b"not pw", "repo")
    with pytest.raises(KeyError_, match="repository repo is encrypted: set PITR_PASSPHRASE"):
        check_key(meta, None, "repo")
    with pytest.raises(KeyError_, match="repository repo is not encrypted"):
        check_key({"format_version": 1}, key, "repo")
    # The stored entry holds neither the passphrase nor the key.
    stored = json.dumps(encryption)
    assert "pw" not in stored and key.hex() not in stored


@pytest.mark.parametrize(
    "change",
    [{"n": 1 << 40}, {"n": 1000}, {"r": 0}, {"salt": "AAAA"}, {"salt": "!!"}, {"name": "md5"}],
    ids=["huge-n", "n-not-power-of-two", "r-zero", "short-salt", "bad-base64", "other-kdf"],
)
def test_damaged_kdf_parameters_are_refused_before_deriving(change: dict[str, object]) -> None:
    raw = {**new_params(**FAST).to_json(), **change}
    with pytest.raises(FormatError, match="encryption parameters are damaged"):
        KdfParams.from_json(raw, "repo")


# -- the repository --------------------------------------------------------------


def encrypted_repo(root: Path, passphrase: bytes) -> Repository:
    encryption, key = fast_encryption(passphrase)
    repo, created = Repository.init(
        (root / "repo").as_uri(), f"sqlite:///{root / 'c.db'}", key=key, encryption=encryption
    )
    assert created and repo.encrypted
    return repo


def test_names_are_keyed_and_stored_bytes_hide_the_plaintext(tmp_path: Path) -> None:
    plaintext = b"a secret row that must not show " * 100
    first = encrypted_repo(tmp_path / "a", b"one passphrase")
    second = encrypted_repo(tmp_path / "b", b"another passphrase")
    try:
        a, b = first.put_chunk(plaintext), second.put_chunk(plaintext)
        assert a.oid != b.oid
        assert hashlib.sha256(plaintext).hexdigest() not in (a.oid, b.oid)
        assert b"secret row" not in first.store.get(object_key(a.oid))
        assert first.get_chunk(a.oid) == plaintext

        first.put_record("records/db/wal/000000010000000000000001", {"note": "secret row"})
        sealed = first.store.get("records/db/wal/000000010000000000000001")
        assert b"secret row" not in sealed and b"note" not in sealed
        assert first.get_record("records/db/wal/000000010000000000000001") == {"note": "secret row"}
    finally:
        first.close()
        second.close()


def test_open_refuses_a_missing_or_wrong_key_before_touching_the_catalog(tmp_path: Path) -> None:
    url = (tmp_path / "a" / "repo").as_uri()
    encrypted_repo(tmp_path / "a", b"pw").close()
    meta = json.loads((tmp_path / "a" / "repo" / REPO_CONFIG_KEY).read_text())
    never = f"sqlite:///{tmp_path / 'never.db'}"
    with pytest.raises(KeyError_, match="is encrypted"):
        Repository.open(url, never)
    with pytest.raises(KeyError_, match="wrong passphrase"):
        Repository.open(url, never, key=b"\0" * 32)
    with pytest.raises(KeyError_, match="wrong passphrase"):
        Repository.init(url, never, key=b"\0" * 32)
    assert not (tmp_path / "never.db").exists()
    # The right key, derived again from what the repository file holds, opens it.
    Repository.open(
        url, f"sqlite:///{tmp_path / 'a' / 'c.db'}", key=key_from_meta(meta, b"pw", url)
    ).close()


# -- the console script, without a server ------------------------------------------


def plain_config(root: Path, key_file: Path | None = None, name: str = "pitr.toml") -> Path:
    config = root / name
    extra = f'key_file = "{key_file}"\n' if key_file else ""
    config.write_text(f'[repository]\nurl = "{root / "repo"}"\n{extra}')
    return config


def one_line_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    """Exit code as wanted, one line on stderr naming the problem, no passphrase anywhere."""
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]
    assert PASSPHRASE not in result.stdout + result.stderr


def test_init_rules(tmp_path: Path) -> None:
    config = plain_config(tmp_path)
    env = {"PITR_PASSPHRASE": PASSPHRASE}
    one_line_error(run_pitr(["init", "--encrypt"], config, check=False), 2, "needs a passphrase")
    # A passphrase without --encrypt would make a repository that is not encrypted.
    one_line_error(run_pitr(["init"], config, env=env, check=False), 2, "--encrypt")
    assert not (tmp_path / "repo").exists()

    out = run_pitr(["init", "--encrypt"], config, env=env).stdout
    assert "created (encrypted)" in out and PASSPHRASE not in out
    # Idempotent with the right key, with or without the flag.
    assert "already initialised (encrypted)" in run_pitr(["init"], config, env=env).stdout
    run_pitr(["init", "--encrypt"], config, env=env)
    one_line_error(run_pitr(["init"], config, check=False), 2, "is encrypted")
    one_line_error(
        run_pitr(["init"], config, env={"PITR_PASSPHRASE": "wrong"}, check=False),
        2,
        "wrong passphrase",
    )

    # A plain repository is never turned into a half-encrypted one.
    plain = tmp_path / "plain"
    plain.mkdir()
    plain_cfg = plain_config(plain)
    run_pitr(["init"], plain_cfg)
    one_line_error(
        run_pitr(["init", "--encrypt"], plain_cfg, env=env, check=False), 2, "not encrypted"
    )
    one_line_error(run_pitr(["init"], plain_cfg, env=env, check=False), 2, "not encrypted")
    assert "encryption" not in json.loads((plain / "repo" / REPO_CONFIG_KEY).read_text())


def test_key_file_holds_the_passphrase(tmp_path: Path) -> None:
    key_file = tmp_path / "passphrase"
    key_file.write_text(PASSPHRASE + "\n")
    key_file.chmod(0o600)
    config = plain_config(tmp_path, key_file)
    run_pitr(["init", "--encrypt"], config)
    # The same passphrase through the environment opens the same repository.
    env_config = plain_config(tmp_path, name="env.toml")
    run_pitr(["init"], env_config, env={"PITR_PASSPHRASE": PASSPHRASE})
    key_file.write_text("")
    one_line_error(run_pitr(["init"], config, check=False), 2, "is empty")
    key_file.unlink()
    one_line_error(run_pitr(["init"], config, check=False), 2, "key_file", "No such file")


# -- a real PostgreSQL archiving into an encrypted repository ------------------------


@pytest.fixture
def encrypted(
    pg_cluster: PostgresCluster, pg_cluster_factory: object, shared_tmp: Path
) -> Iterator[Archived]:
    """start_archiving with a key_file: archive_command and restore_command run as
    postgres, which must be able to read it (and nobody else)."""
    key_file = shared_tmp / "passphrase"
    key_file.write_text(PASSPHRASE + "\n")
    key_file.chmod(0o600)
    pw = pwd.getpwnam("postgres")
    os.chown(key_file, pw.pw_uid, pw.pw_gid)
    repo = shared_tmp / "repo"
    config = shared_tmp / "pitr.toml"
    config.write_text(
        f'[repository]\nurl = "{repo}"\nkey_file = "{key_file}"\n\n'
        f'[sources.db]\nkind = "postgres"\ndsn = "{pg_cluster.dsn}"\n'
        f'pgdata = "{pg_cluster.pgdata}"\n'
    )
    config.chmod(0o644)
    archived = Archived(pg_cluster, config, repo, shared_tmp, pg_cluster_factory)
    assert "created (encrypted)" in archived.pitr("init", "--encrypt").stdout
    pg_cluster.set_archive_command(f"{PITR_BIN} --config {config} wal-push %p")
    pg_cluster.psql("CREATE TABLE notes (n int PRIMARY KEY, body text NOT NULL)")
    yield archived


def repository_bytes(repo: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}


def test_encrypted_archive_backup_rebuild_and_restore(encrypted: Archived) -> None:
    archived = encrypted
    marker = f"marker-{uuid.uuid4().hex}"
    archived.pitr("backup", "--source", "db")
    archived.cluster.psql(f"INSERT INTO notes VALUES (1, '{marker}')")
    t1 = time.time()
    time.sleep(0.3)
    archived.cluster.psql("INSERT INTO notes VALUES (2, 'after the target')")
    t2 = time.time()
    archived.switch_and_wait()
    archived.pitr("backup", "--source", "db")  # its heap files hold the marker too

    # Nothing in the repository (store and catalog) shows the marker or the
    # passphrase; the store shows no plaintext file names or JSON either.
    files = repository_bytes(archived.repo)
    assert any(p.parts[-3] == "objects" for p in files)
    for path, data in files.items():
        assert marker.encode() not in data, path
        assert PASSPHRASE.encode() not in data, path
        if "records" in path.parts or "objects" in path.parts:
            assert data[:3] == b"PTR" and data[4] & FLAG_AESGCM, path  # sealed with AES-GCM
            assert b"PG_VERSION" not in data and b'"source"' not in data, path
    assert PASSPHRASE not in archived.cluster.log_tail(100_000)

    # Every command refuses a missing or wrong key with one line: exit 2,
    # 128 for wal-fetch so that PostgreSQL stops recovery.
    no_key = archived.base / "no-key.toml"
    no_key.write_text(archived.config.read_text().replace("key_file", "# key_file"))
    no_key.chmod(0o644)
    segment = archived.cluster.psql("SELECT pg_walfile_name(pg_current_wal_lsn())").strip()
    open_dir(archived.base / "fetched")
    target = midpoint_iso(t1, t2)
    commands = [
        (["init"], 2),
        (["backup", "--source", "db"], 2),
        (["wal-push", "--source", "db", f"{archived.cluster.pgdata}/pg_wal/{segment}"], 2),
        (["wal-fetch", "--source", "db", segment, str(archived.base / "fetched" / "x")], 128),
        (["restore", "--source", "db", "--to", target, "--dry-run"], 2),
        (["catalog", "rebuild", "--force"], 2),
    ]
    for args, code in commands:
        missing = run_pitr(args, no_key, user="postgres", check=False)
        one_line_error(missing, code, "encrypted: set PITR_PASSPHRASE or key_file")
        wrong = run_pitr(
            args, archived.config, user="postgres", env={"PITR_PASSPHRASE": "wrong"}, check=False
        )
        one_line_error(wrong, code, "wrong passphrase")

    # The catalog comes back from the encrypted store with the key ...
    for path in archived.repo.glob("catalog.db*"):
        path.unlink()
    wrong = archived.pitr("catalog", "rebuild", env={"PITR_PASSPHRASE": "wrong"}, check=False)
    one_line_error(wrong, 2, "wrong passphrase")
    assert not (archived.repo / "catalog.db").exists()
    rebuilt = archived.pitr("catalog", "rebuild").stdout
    assert "catalog rebuilt" in rebuilt and PASSPHRASE not in rebuilt

    # ... and a restore through it, whose restore_command reads the key file,
    # brings back the marker row and not the later one.
    pgdata = archived.base / "restored"
    result = archived.pitr("restore", "--source", "db", "--to", target, "--pgdata", str(pgdata))
    assert PASSPHRASE not in result.stdout + result.stderr
    assert PASSPHRASE not in (pgdata / "postgresql.auto.conf").read_text()
    restored = archived.restored(pgdata)
    try:
        rows = restored.psql("SELECT n || ':' || body FROM notes ORDER BY n").split()
        assert rows == [f"1:{marker}"]
    finally:
        restored.stop()


def midpoint_iso(t1: float, t2: float) -> str:
    a, b = (datetime.fromtimestamp(t, UTC) for t in (t1, t2))
    return midpoint(a, b).isoformat()
