"""The documentation against what it documents: the real console script's
--help, the contract (INTERFACE.md), the config and exit codes in the code,
and the links between pages. Each check lists what is missing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

from pitr import exitcodes, kinds
from pitr.config import REPO_KEYS, load_config

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference.md"
PITR = Path(sys.executable).parent / "pitr"

# INTERFACE.md is the shared contract; it lives beside the repository here.
INTERFACE_CANDIDATES = [
    os.environ.get("PITR_INTERFACE", ""),
    str(ROOT / "INTERFACE.md"),
    str(ROOT.parent / "shared" / "INTERFACE.md"),
]


# -- helpers ------------------------------------------------------------------


def pitr_help(*command: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PITR_")}
    result = subprocess.run(
        [str(PITR), *command, "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"pitr {' '.join(command)} --help: {result.stderr}"
    return result.stdout


def help_section(text: str, title: str) -> list[str]:
    """The lines of one section ("Commands:", "Options:") of click's help."""
    lines: list[str] = []
    inside = False
    for line in text.splitlines():
        if line.strip() == title:
            inside = True
        elif inside and line and not line.startswith(" "):
            break
        elif inside:
            lines.append(line)
    return lines


def help_commands(*group: str) -> list[str]:
    return [
        m.group(1)
        for line in help_section(pitr_help(*group), "Commands:")
        if (m := re.match(r"^  ([a-z][a-z-]*)\s", line))
    ]


def help_options(*command: str) -> list[str]:
    return [
        m.group(1)
        for line in help_section(pitr_help(*command), "Options:")
        if (m := re.match(r"^  (?:-\w, )?(--[a-z][a-z0-9-]*)", line)) and m.group(1) != "--help"
    ]


@cache
def command_paths() -> tuple[str, ...]:
    """Every command `pitr --help` lists; groups as "report rpo"."""
    paths = []
    for name in help_commands():
        subcommands = help_commands(name) if "Commands:" in pitr_help(name) else []
        paths += [f"{name} {sub}" for sub in subcommands] or [name]
    return tuple(paths)


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def headings(text: str) -> list[tuple[int, str, int]]:
    """(level, text without backticks, offset) of every heading outside code."""
    found = []
    fenced = False
    offset = 0
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"^(#{1,6}) (.+?)\s*$", line)):
            found.append((len(m.group(1)), m.group(2).replace("`", ""), offset))
        offset += len(line)
    return found


def sections(text: str) -> dict[str, str]:
    """Heading text -> the text under it, up to the next heading of its level or higher."""
    hs = headings(text)
    out = {}
    for i, (level, title, start) in enumerate(hs):
        end = next((o for lv, _, o in hs[i + 1 :] if lv <= level), len(text))
        out[title] = text[start:end]
    return out


def slugs(text: str) -> set[str]:
    """GitHub's anchors for the headings of a page."""
    seen: dict[str, int] = {}
    out = set()
    for _, title, _ in headings(text):
        base = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def interface() -> str:
    for candidate in INTERFACE_CANDIDATES:
        if candidate and Path(candidate).is_file():
            return read(Path(candidate))
    raise AssertionError(
        f"INTERFACE.md not found (set PITR_INTERFACE); looked in {INTERFACE_CANDIDATES}"
    )


def interface_part(title: str) -> str:
    text = interface()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def reference_section(path: str) -> str | None:
    return sections(read(REFERENCE)).get(f"pitr {path}")


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


# -- the reference against the contract and the code ---------------------------


def interface_commands() -> dict[str, list[str]]:
    """Command path -> options, from INTERFACE.md's command table."""
    commands = {}
    for m in re.finditer(r"^\|\s*`pitr ([^`]*)`", interface_part("Commands"), re.M):
        words = []
        for token in m.group(1).split():
            if not re.fullmatch(r"[a-z][a-z-]*", token):
                break
            words.append(token)
        commands[" ".join(words)] = re.findall(r"--[a-z][a-z-]*", m.group(1))
    return commands


def test_reference_covers_every_command_and_option_of_the_interface() -> None:
    commands = interface_commands()
    assert len(commands) >= 14, commands
    missing = []
    for path, options in commands.items():
        section = reference_section(path)
        if section is None:
            missing.append(f"pitr {path}")
            continue
        missing += [f"pitr {path} {o}" for o in options if o not in section]
    assert not missing, f"INTERFACE.md commands or options missing from the reference: {missing}"


def interface_config_keys() -> set[str]:
    block = re.search(r"```toml\n(.*?)```", interface_part("Configuration"), re.S)
    assert block, "no TOML example in INTERFACE.md"
    return {
        m.group(1)
        for line in block.group(1).splitlines()
        if (m := re.match(r"^\s*#?\s*([a-z_]+)\s*=", line))
    }


def test_reference_covers_every_config_key_of_the_interface_and_the_code() -> None:
    keys = (
        interface_config_keys()
        | REPO_KEYS
        | set().union(*(kinds.get(k).config.KEYS for k in kinds.names()))
    )
    assert {"url", "catalog", "dsn", "pgdata", "streams", "keys"} <= keys, keys
    text = read(REFERENCE)
    missing = sorted(k for k in keys if f"`{k}`" not in text)
    assert not missing, f"config keys missing from docs/reference.md: {missing}"
    for table in ("[repository]", "[sources.NAME]"):
        assert table in text, f"docs/reference.md does not describe {table}"


def test_reference_covers_every_environment_variable() -> None:
    named = set(re.findall(r"\b((?:PITR|AWS)_[A-Z_]+)\b", interface()))
    for path in (ROOT / "pitr").rglob("*.py"):
        named |= set(re.findall(r"[\"'](PITR_[A-Z_]+)[\"']", read(path)))
    assert {"PITR_CONFIG", "PITR_REPO", "PITR_CATALOG"} <= named, named
    text = read(REFERENCE)
    missing = sorted(v for v in named if f"`{v}`" not in text)
    assert not missing, f"environment variables missing from docs/reference.md: {missing}"


def test_reference_exit_code_table_has_every_code() -> None:
    table = sections(read(REFERENCE)).get("Exit codes", "")
    rows = set(re.findall(r"^\| (\d+) \|", table, re.M))
    codes = {str(v) for k, v in vars(exitcodes).items() if k.isupper() and isinstance(v, int)}
    codes |= set(re.findall(r"^\| (\d+)\+? \|", interface_part("Exit codes"), re.M))
    assert len(codes) >= 7, codes
    missing = sorted(codes - rows, key=int)
    assert not missing, f"exit codes missing from the reference's exit-code table: {missing}"


def test_reference_names_every_json_field_of_the_interface() -> None:
    fields = set(re.findall(r"`([a-z_]+)`", interface_part("JSON shapes")))
    assert {"lag_seconds", "recoverable_to", "stored_bytes"} <= fields, fields
    shapes = sections(read(REFERENCE)).get("JSON shapes", "")
    missing = sorted(f for f in fields if f'"{f}"' not in shapes and f"`{f}`" not in shapes)
    assert not missing, f"JSON fields missing from the reference's JSON shapes: {missing}"


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
