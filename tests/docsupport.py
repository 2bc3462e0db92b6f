"""What tests/test_docs.py reads: the real console script's --help, the
Markdown of the pages, and the JSON fields the code writes (from its
source, with ast). Only files of the repository are read."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference.md"
PITR = Path(sys.executable).parent / "pitr"
PRODUCT = ("pitr", "catalog", "archiver", "recovery")


# -- the command line ---------------------------------------------------------


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


# -- Markdown ------------------------------------------------------------------


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


def reference_section(path: str) -> str | None:
    return sections(read(REFERENCE)).get(f"pitr {path}")


# -- the JSON the code writes ---------------------------------------------------

# Where the reporting commands build their JSON: file -> functions. The
# dict keys these functions write are the fields the commands print.
JSON_BUILDERS = {
    "pitr/output.py": ("window_json", "piece_json"),
    "pitr/commands/info.py": ("info_doc", "source_json"),
    "pitr/health.py": ("rpo_json",),
    "pitr/kinds/pgstream.py": ("slot_report", "slot_json"),
    "pitr/commands/check.py": ("report_json",),
    "pitr/commands/verify.py": ("command",),
    "pitr/commands/expire.py": ("_json",),
    "catalog/reports.py": ("wal_totals", "newest_streamed", "stream_totals", "repository_totals"),
    "recovery/postgres/report.py": ("status",),  # identity
    "recovery/sqlite/report.py": ("status", "_totals"),  # identity, archive totals
    "catalog/replfacts.py": ("repl_totals",),  # redis archive totals of a replication capture
    "recovery/redis/replwindow.py": ("epochs_json",),
    "recovery/redis/replreport.py": ("repl_status",),
}
# Keys a builder writes that never reach the output (status() pops them).
NOT_EMITTED = frozenset({"newest_commit_seen"})
# Problem(source, type, detail, extra): check's problems, by kind
PROBLEMS = (
    "recovery/postgres/continuity.py",
    "recovery/redis/continuity.py",
    "recovery/redis/replreport.py",
    "recovery/sqlite/report.py",
)


def functions(path: str) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(read(ROOT / path))
    return {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def literal_keys(node: ast.AST, named: dict[str, ast.Dict] | None = None) -> set[str]:
    """String keys of the dict displays in node; `**name` of a dict display
    assigned to name (in `named`) counts with its keys."""
    keys: set[str] = set()
    for d in ast.walk(node):
        if not isinstance(d, ast.Dict):
            continue
        for k, v in zip(d.keys, d.values, strict=True):
            if isinstance(k, ast.Constant) and isinstance(k.value, str):
                keys.add(k.value)
            elif k is None and isinstance(v, ast.Name) and named and v.id in named:
                keys |= literal_keys(named[v.id])
    return keys


def problem_fields() -> set[str]:
    fields: set[str] = set()
    for fn in (f for path in PROBLEMS for f in functions(path).values()):
        named = {
            t.id: n.value
            for n in ast.walk(fn)
            if isinstance(n, ast.Assign) and isinstance(n.value, ast.Dict)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        for call in ast.walk(fn):
            if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Problem":
                fields |= literal_keys(call.args[3], named) if len(call.args) > 3 else set()
    return fields


@cache
def emitted_json_fields() -> frozenset[str]:
    fields = problem_fields()
    for path, names in JSON_BUILDERS.items():
        found = functions(path)
        for name in names:
            assert name in found, f"{path} has no function {name}: update JSON_BUILDERS"
            fields |= literal_keys(found[name])
    return frozenset(fields - NOT_EMITTED)
