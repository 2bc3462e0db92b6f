"""Config loading rules of docs/reference.md: where the file is found, overrides,
defaults, and one clear error for each kind of mistake."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pitr.config import Config, ConfigError, load_config

POSTGRES = """
[sources.db]
kind = "postgres"
dsn = "host=/tmp port=5432 user=postgres dbname=postgres"
pgdata = "/var/lib/postgresql/15/main"
"""

REDIS = """
[sources.cache]
kind = "redis"
url = "redis://127.0.0.1:6379/0"
streams = ["cb:stream:*"]
"""


def write(path: Path, repo_url: str, body: str = "") -> Path:
    path.write_text(f'[repository]\nurl = "{repo_url}"\n{body}')
    return path


@pytest.fixture(autouse=True)
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test runs in an empty directory with no PITR_* in the environment."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for name in ("PITR_CONFIG", "PITR_REPO", "PITR_CATALOG"):
        monkeypatch.delenv(name, raising=False)
    return cwd


# -- where the file comes from -------------------------------------------------------


def test_explicit_path_wins_over_env_and_cwd(tmp_path: Path, empty_cwd: Path) -> None:
    explicit = write(tmp_path / "explicit.toml", "file:///explicit")
    from_env = write(tmp_path / "env.toml", "file:///env")
    write(empty_cwd / "pitr.toml", "file:///cwd")
    config = load_config(str(explicit), {"PITR_CONFIG": str(from_env)})
    assert config.repository.url == "file:///explicit"
    assert config.path == str(explicit)


def test_pitr_config_wins_over_cwd(tmp_path: Path, empty_cwd: Path) -> None:
    from_env = write(tmp_path / "env.toml", "file:///env")
    write(empty_cwd / "pitr.toml", "file:///cwd")
    assert load_config(None, {"PITR_CONFIG": str(from_env)}).repository.url == "file:///env"


def test_pitr_config_from_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = write(tmp_path / "env.toml", "file:///env")
    monkeypatch.setenv("PITR_CONFIG", str(from_env))
    assert load_config().repository.url == "file:///env"


def test_pitr_toml_in_the_working_directory(empty_cwd: Path) -> None:
    write(empty_cwd / "pitr.toml", "file:///cwd")
    config = load_config(None, {})
    assert config.repository.url == "file:///cwd"
    assert config.path == "pitr.toml"


def test_no_config_anywhere_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no configuration.*--config"):
        load_config(None, {})


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.toml: no such file"):
        load_config(str(tmp_path / "nope.toml"), {})


def test_missing_file_named_by_pitr_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="gone.toml: no such file"):
        load_config(None, {"PITR_CONFIG": str(tmp_path / "gone.toml")})


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[repository\nurl = "file:///x"\n')
    with pytest.raises(ConfigError, match="bad.toml"):
        load_config(str(bad), {})


# -- overrides and defaults ---------------------------------------------------------------


def test_pitr_repo_alone_is_enough(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    config = load_config(None, {"PITR_REPO": str(repo)})
    assert config.repository.url == repo.as_uri()
    assert config.repository.catalog == f"sqlite:///{repo / 'catalog.db'}"
    assert config.sources == {}
    assert config.path is None


def test_env_overrides_both_repository_keys(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "file:///from/file", 'catalog = "sqlite:////from/file.db"\n')
    env = {"PITR_REPO": "s3://bucket/prefix", "PITR_CATALOG": "postgresql://h/pitr"}
    config = load_config(str(path), env)
    assert config.repository.url == "s3://bucket/prefix"
    assert config.repository.catalog == "postgresql://h/pitr"
    # Each override works alone too.
    only_catalog = load_config(str(path), {"PITR_CATALOG": "sqlite:////other.db"})
    assert only_catalog.repository.url == "file:///from/file"
    assert only_catalog.repository.catalog == "sqlite:////other.db"


def test_default_catalog_is_inside_a_file_repository(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "file:///var/lib/pitr/repo")
    config = load_config(str(path), {})
    assert config.repository.catalog == "sqlite:////var/lib/pitr/repo/catalog.db"
    assert config.repository.compression_level == 3
    assert config.repository.endpoint_url is None


def test_bare_path_is_a_local_repository(tmp_path: Path, empty_cwd: Path) -> None:
    absolute = load_config(str(write(tmp_path / "a.toml", "/srv/pitr repo")), {})
    assert absolute.repository.url == "file:///srv/pitr%20repo"
    assert absolute.repository.catalog == "sqlite:////srv/pitr repo/catalog.db"
    relative = load_config(str(write(tmp_path / "b.toml", "data/repo")), {})
    assert relative.repository.url == (empty_cwd / "data" / "repo").as_uri()


def test_s3_repository_needs_a_catalog(tmp_path: Path) -> None:
    path = write(tmp_path / "s3.toml", "s3://bucket/prefix")
    with pytest.raises(ConfigError, match="catalog is required for an s3 repository"):
        load_config(str(path), {})
    with_catalog = write(
        tmp_path / "s3c.toml",
        "s3://bucket/prefix",
        'catalog = "postgresql://pitr@db/pitr"\nendpoint_url = "http://127.0.0.1:9000"\n',
    )
    config = load_config(str(with_catalog), {})
    assert config.repository.catalog == "postgresql://pitr@db/pitr"
    assert config.repository.endpoint_url == "http://127.0.0.1:9000"


def test_full_example_of_the_interface(tmp_path: Path) -> None:
    path = write(
        tmp_path / "full.toml",
        "file:///var/lib/pitr/repo",
        'catalog = "sqlite:////var/lib/pitr/catalog.db"\ncompression_level = 9\n'
        + POSTGRES
        + 'backup_every = "1d"\n'
        + REDIS
        + 'keys = ["cb:*"]\n',
    )
    config = load_config(str(path), {})
    assert config.repository.compression_level == 9
    db, cache = config.sources["db"], config.sources["cache"]
    assert (db.kind, db.pgdata, db.backup_every) == (
        "postgres",
        "/var/lib/postgresql/15/main",
        timedelta(days=1),
    )
    assert db.dsn.startswith("host=/tmp")
    assert (cache.kind, cache.url) == ("redis", "redis://127.0.0.1:6379/0")
    assert cache.streams == ("cb:stream:*",)
    assert cache.keys == ("cb:*",)


def test_redis_keys_default_to_everything_captured_by_replication(tmp_path: Path) -> None:
    config = load_config(str(write(tmp_path / "r.toml", "/r", REDIS)), {})
    assert config.sources["cache"].keys == ("*",)
    assert config.sources["cache"].capture == "replication"
    body = REDIS + 'capture = "streams"\n'
    assert load_config(str(write(tmp_path / "s.toml", "/r", body)), {}).sources[
        "cache"
    ].capture == ("streams")


# -- mistakes, each named ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('colour = "blue"\n', "unknown key 'colour'"),
        (POSTGRES + 'pgdat = "/x"\n', r"\[sources.db\]: unknown key 'pgdat'"),
        (REDIS + 'dsn = "host=x"\n', r"\[sources.cache\]: unknown key 'dsn'"),
        ("compression_level = 40\n", "compression_level must be 1..22"),
        (POSTGRES + 'backup_every = "often"\n', "backup_every: invalid duration"),
        ('[sources.x]\nkind = "mysql"\n', r"\[sources.x\]: kind must be 'postgres' or 'redis'"),
        ('[sources.x]\ndsn = "host=x"\n', r"\[sources.x\]: kind must be"),
        ('[sources.db]\nkind = "postgres"\npgdata = "/x"\n', "dsn is required"),
        ('[sources.db]\nkind = "postgres"\ndsn = "host=x"\n', "pgdata is required"),
        ('[sources.c]\nkind = "redis"\n', "url is required for a redis source"),
        (REDIS + 'keys = "cb:*"\n', "keys must be a list"),
        ('[sources]\ndb = "postgres"\n', r"\[sources.db\] must be a table"),
        ("[backups]\nkeep = 3\n", "unknown section 'backups'"),
        ('[report]\nmax_lag = "soon"\n', r"\[report\]: max_lag: invalid duration"),
        ('[report]\nmax_rpo = "5m"\n', r"\[report\]: unknown key 'max_rpo'"),
        (POSTGRES + 'max_backup_age = "x"\n', r"\[sources.db\]: max_backup_age: invalid"),
        ("[serve]\nlisten = 9580\n", r"\[serve\]: listen must be a non-empty string"),
        ('[serve]\nport = "9580"\n', r"\[serve\]: unknown key 'port'"),
    ],
)
def test_config_mistakes_are_named(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path / "wrong.toml", "file:///r", body)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(str(path), {})
    assert "wrong.toml" in str(info.value)
    assert "\n" not in str(info.value)


def test_a_repository_url_of_no_known_scheme_names_the_forms(tmp_path: Path) -> None:
    path = write(tmp_path / "ftp.toml", "ftp://host/repo")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), {})
    assert str(info.value) == (
        f"config {path}: repository url 'ftp://host/repo' "
        "must be a path, file://, s3:// or memory://"
    )


def test_missing_repository_url(tmp_path: Path) -> None:
    path = tmp_path / "nourl.toml"
    path.write_text(POSTGRES)
    with pytest.raises(ConfigError, match="url is required"):
        load_config(str(path), {})
    # PITR_REPO fills the gap.
    assert load_config(str(path), {"PITR_REPO": "/r"}).repository.url == "file:///r"


# -- choosing a source --------------------------------------------------------------------


@pytest.fixture
def both(tmp_path: Path) -> Config:
    return load_config(str(write(tmp_path / "both.toml", "/r", POSTGRES + REDIS)), {})


def test_source_by_name(both: Config) -> None:
    assert both.source("db").kind == "postgres"
    assert both.source("cache", "redis").name == "cache"


def test_source_the_only_one_of_a_kind(both: Config) -> None:
    assert both.source(None, "postgres").name == "db"
    assert both.source(None, "redis").name == "cache"


def test_source_unknown_name(both: Config) -> None:
    with pytest.raises(ConfigError, match=r"unknown source 'nope' \(configured: cache, db\)"):
        both.source("nope")


def test_source_of_the_wrong_kind(both: Config) -> None:
    with pytest.raises(ConfigError, match="'cache' is a redis source, not postgres"):
        both.source("cache", "postgres")


def test_source_ambiguous_without_a_name(tmp_path: Path, both: Config) -> None:
    with pytest.raises(ConfigError, match="2 sources: name one with --source"):
        both.source(None)
    two_pg = POSTGRES + POSTGRES.replace("sources.db", "sources.db2")
    config = load_config(str(write(tmp_path / "two.toml", "/r", two_pg)), {})
    with pytest.raises(ConfigError, match="2 postgres sources: name one with --source"):
        config.source(None, "postgres")


def test_source_none_of_the_kind(tmp_path: Path) -> None:
    config = load_config(str(write(tmp_path / "pg.toml", "/r", POSTGRES)), {})
    assert config.source(None).name == "db"
    with pytest.raises(ConfigError, match="no redis sources"):
        config.source(None, "redis")
    empty = load_config(None, {"PITR_REPO": "/r"})
    with pytest.raises(ConfigError, match="no sources"):
        empty.source(None)


def test_limits_of_a_source_fall_back_to_the_report_table(tmp_path: Path) -> None:
    body = '[report]\nmax_lag = "10m"\nmax_backup_age = "26h"\n' + POSTGRES
    body += 'max_lag = "30s"\n' + REDIS
    config = load_config(str(write(tmp_path / "limits.toml", "file:///r", body)), {})
    db, cache = config.thresholds("db"), config.thresholds("cache")
    assert (db.max_lag, db.max_backup_age) == (timedelta(seconds=30), timedelta(hours=26))
    assert (cache.max_lag, cache.max_backup_age) == (timedelta(minutes=10), timedelta(hours=26))
    assert config.thresholds("gone").max_lag == timedelta(minutes=10)  # known to the catalog only
    plain = load_config(str(write(tmp_path / "none.toml", "file:///r", POSTGRES)), {})
    assert plain.thresholds("db").max_lag is None and plain.serve.listen is None


def test_the_serve_token_comes_from_the_environment_first(tmp_path: Path) -> None:
    body = '[serve]\nlisten = "0.0.0.0:1"\ntoken = "a"\n'
    path = write(tmp_path / "serve.toml", "file:///r", body)
    assert load_config(str(path), {}).serve.token == "a"
    assert load_config(str(path), {"PITR_SERVE_TOKEN": "b"}).serve.token == "b"
