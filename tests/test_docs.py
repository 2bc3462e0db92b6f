"""The documentation against what it documents: docs/reference.md (the
contract) against the real console script's --help and against the config
keys, environment variables, exit codes and JSON fields in the code, both
ways; and the links between pages. Each check lists what is missing. Only
files of the repository are read."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pitr import exitcodes, kinds
from pitr.config import REPO_KEYS, SERVE_KEYS, THRESHOLD_KEYS, load_config
from tests.docsupport import (
    DOCS,
    PRODUCT,
    REFERENCE,
    ROOT,
    command_paths,
    emitted_json_fields,
    help_options,
    read,
    reference_section,
    sections,
    slugs,
    without_code_blocks,
)

SOURCE_KEYS: set[str] = set().union(*(kinds.get(k).config.KEYS for k in kinds.names()))


# -- the reference against the real command line -------------------------------


def test_help_lists_the_commands_this_test_expects_to_find() -> None:
    # Guards the parsing below: an empty list would make every check pass.
    paths = command_paths()
    assert {"init", "wal-push", "restore", "report rpo", "catalog rebuild"} <= set(paths), paths


def test_reference_has_a_section_for_every_command_of_pitr_help() -> None:
    missing = [p for p in command_paths() if reference_section(p) is None]
    assert not missing, f"docs/reference.md has no '### `pitr X`' section for: {missing}"


def test_reference_documents_every_option_of_every_command() -> None:
    missing = []
    for path in command_paths():
        section = reference_section(path) or ""
        missing += [f"pitr {path} {o}" for o in help_options(*path.split()) if o not in section]
    assert not missing, f"options shown by --help but not in their reference section: {missing}"


def test_reference_documents_the_global_options() -> None:
    options = help_options()
    assert "--config" in options, options
    text = read(REFERENCE)
    missing = [o for o in options if o not in text]
    assert not missing, f"global options missing from docs/reference.md: {missing}"


# -- the reference against the code, both ways ------------------------------------


def reference_command_table() -> list[str]:
    """Command paths of the table under "## Commands"."""
    table = sections(read(REFERENCE)).get("Commands", "")
    return re.findall(r"^\| \[`pitr ([^`]+)`\]", table, re.M)


def synopsis_options(path: str) -> list[str]:
    """The options of the code block that opens a command's section."""
    block = re.search(r"^```\n(.*?)^```", reference_section(path) or "", re.S | re.M)
    assert block, f"the reference section of pitr {path} has no synopsis block"
    return re.findall(r"--[a-z][a-z0-9-]*", block.group(1))


def test_the_reference_command_table_is_the_command_line() -> None:
    listed = reference_command_table()
    assert len(listed) >= 14, listed
    missing = sorted(set(command_paths()) - set(listed))
    unknown = sorted(set(listed) - set(command_paths()))
    assert not missing, f"commands of pitr --help missing from the reference's table: {missing}"
    assert not unknown, f"commands in the reference's table that pitr --help lacks: {unknown}"
    assert len(listed) == len(set(listed)), listed


def test_every_option_of_a_synopsis_exists() -> None:
    unknown = []
    for path in command_paths():
        options = set(help_options(*path.split()))
        unknown += [f"pitr {path} {o}" for o in synopsis_options(path) if o not in options]
    assert not unknown, f"options in the reference's synopses that --help does not show: {unknown}"


def test_every_option_is_in_its_synopsis() -> None:
    missing = []
    for path in command_paths():
        synopsis = set(synopsis_options(path))
        missing += [f"pitr {path} {o}" for o in help_options(*path.split()) if o not in synopsis]
    assert not missing, f"options missing from their command's synopsis: {missing}"


def reference_config_example() -> str:
    block = re.search(r"```toml\n(.*?)```", sections(read(REFERENCE))["Configuration file"], re.S)
    assert block, "no TOML example in the reference's Configuration file section"
    return block.group(1)


def table_keys(title: str) -> set[str]:
    """The keys in the first column of a section's table."""
    return set(re.findall(r"^\| `([a-z_]+)` \|", sections(read(REFERENCE))[title], re.M))


def test_reference_covers_every_config_key_of_the_code() -> None:
    keys = REPO_KEYS | SOURCE_KEYS | SERVE_KEYS | set(THRESHOLD_KEYS)
    assert {"url", "catalog", "dsn", "pgdata", "streams", "keys"} <= keys, keys
    text = read(REFERENCE)
    missing = sorted(k for k in keys if f"`{k}`" not in text)
    assert not missing, f"config keys missing from docs/reference.md: {missing}"
    for table in ("[repository]", "[sources.NAME]"):
        assert table in text, f"docs/reference.md does not describe {table}"
    assert table_keys("[repository]") == REPO_KEYS
    assert table_keys("[report]") == set(THRESHOLD_KEYS)
    assert table_keys("[serve]") == SERVE_KEYS
    assert table_keys("[sources.NAME]") == set().union(
        *(kinds.get(k).config.KEYS for k in kinds.names())
    )


def test_the_reference_config_example_uses_every_key_and_loads(tmp_path: Path) -> None:
    example = reference_config_example()
    named = {
        m.group(1)
        for line in example.splitlines()
        if (m := re.match(r"^\s*#?\s*([a-z_]+)\s*=", line))
    }
    assert named == REPO_KEYS | SOURCE_KEYS | SERVE_KEYS | set(THRESHOLD_KEYS), named
    # With every optional key uncommented, the example is a config pitr accepts.
    config = tmp_path / "pitr.toml"
    config.write_text(re.sub(r"^# ", "", example, flags=re.M))
    loaded = load_config(str(config), env={})
    assert {s.kind for s in loaded.sources.values()} == set(kinds.names())


def product_files() -> list[Path]:
    return [p for package in PRODUCT for p in sorted((ROOT / package).rglob("*.py"))]


def env_table() -> set[str]:
    table = sections(read(REFERENCE))["Environment variables"]
    return {
        v for row in re.findall(r"^\|([^|]*)\|", table, re.M) for v in re.findall(r"`(\w+)`", row)
    }


def test_reference_covers_every_environment_variable() -> None:
    read_by_code: set[str] = set()
    for path in product_files():
        read_by_code |= set(re.findall(r"[\"'](PITR_[A-Z_]+)[\"']", read(path)))
    assert {"PITR_CONFIG", "PITR_REPO", "PITR_CATALOG", "PITR_PASSPHRASE"} <= read_by_code
    # The AWS chain is boto3's: what the other pages tell users to set.
    aws = {v for page in pages() for v in re.findall(r"\b(AWS_[A-Z_]+)\b", read(page))}
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"} <= aws, aws
    documented = env_table()
    missing = sorted(v for v in read_by_code | aws if v not in documented)
    assert not missing, f"environment variables missing from the reference's table: {missing}"
    unused = sorted(v for v in documented if v.startswith("PITR_") and v not in read_by_code)
    assert not unused, f"PITR_ variables the reference lists but no code reads: {unused}"


def test_reference_exit_code_table_is_the_code() -> None:
    table = sections(read(REFERENCE)).get("Exit codes", "")
    rows = set(re.findall(r"^\| (\d+) \|", table, re.M))
    codes = {str(v) for k, v in vars(exitcodes).items() if k.isupper() and isinstance(v, int)}
    assert {"0", "1", "2", "3", "4", "5", "128", "130"} <= codes, codes
    assert rows == codes, f"table {sorted(rows, key=int)}, code {sorted(codes, key=int)}"


def reference_json_shapes() -> str:
    return sections(read(REFERENCE)).get("JSON shapes", "")


def test_reference_names_every_json_field_of_the_code() -> None:
    fields = emitted_json_fields()
    guard = {"lag_seconds", "recoverable_to", "stored_bytes", "read_data", "wal_segment_size"}
    assert guard | {"grace_seconds", "stream_gaps", "first_id", "timelines"} <= fields, fields
    shapes = reference_json_shapes()
    documented = set(re.findall(r'["`]([a-z_]+)["`]', shapes))
    for span in re.findall(r"`\{([^`]*)\}`", shapes):  # `{from, to, detail}`
        documented |= set(re.findall(r"[a-z_]+", span))
    missing = sorted(fields - documented)
    assert not missing, f"JSON fields missing from the reference's JSON shapes: {missing}"


def test_every_field_of_the_reference_json_examples_is_emitted() -> None:
    def keys(value: object) -> set[str]:
        if isinstance(value, dict):
            return set(value) | set().union(*(keys(v) for v in value.values()))
        if isinstance(value, list):
            return set().union(*(keys(v) for v in value))
        return set()

    blocks = re.findall(r"```json\n(.*?)```", reference_json_shapes(), re.S)
    assert len(blocks) >= 4, blocks
    shown = set().union(*(keys(json.loads(b)) for b in blocks))
    unknown = sorted(shown - emitted_json_fields())
    assert not unknown, f"fields of the reference's JSON examples no command emits: {unknown}"


# -- links and the table of contents -------------------------------------------

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def pages() -> list[Path]:
    return sorted(DOCS.glob("*.md")) + [ROOT / "README.md", ROOT / "docker" / "README.md"]


def test_every_relative_link_points_to_something_that_exists() -> None:
    broken = []
    checked = 0
    for page in pages():
        for target in LINK.findall(without_code_blocks(read(page))):
            if re.match(r"^[a-z][a-z+.-]*:", target):
                continue  # http:, https:, mailto:
            checked += 1
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif anchor and dest.suffix == ".md" and anchor not in slugs(read(dest)):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert checked > 20, f"only {checked} relative links found: is the pattern right?"
    assert not broken, f"broken links: {broken}"


def test_index_lists_every_page_in_docs() -> None:
    linked = {t.partition("#")[0] for t in LINK.findall(read(DOCS / "index.md"))}
    missing = [
        p.name for p in sorted(DOCS.glob("*.md")) if p.name != "index.md" and p.name not in linked
    ]
    assert not missing, f"docs/index.md does not list: {missing}"


# -- the docker example ----------------------------------------------------------


def test_docker_config_loads_and_matches_the_dockerfile() -> None:
    config = load_config(str(ROOT / "docker" / "pitr.toml"), env={})
    dockerfile = read(ROOT / "docker" / "Dockerfile")
    archive = re.search(
        r"archive_command=(\S+) --config (\S+) wal-push --source (\w+) %p", dockerfile
    )
    assert archive, "the Dockerfile sets no archive_command calling pitr wal-push"
    exe, config_path, source = archive.groups()
    assert exe == "/opt/pitr/venv/bin/pitr"
    assert f"COPY docker/pitr.toml {config_path}" in dockerfile
    src = config.source(source, "postgres")
    pgdata = re.search(r"PGDATA=(\S+)", dockerfile)
    assert pgdata and pgdata.group(1) == src.pgdata, (pgdata, src.pgdata)
