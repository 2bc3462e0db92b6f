"""Writing rows as SQL, CSV or JSON lines: what `pitr export` puts out, for
every kind with tables (SQLite here, PostgreSQL too).

sql: one `INSERT INTO "table" ("col", ...) VALUES (...);` per row, with
literals the dialect reads back: blobs as '\\xHEX' (PostgreSQL bytea, with
standard_conforming_strings on) or X'HEX' (SQLite); booleans as TRUE/FALSE
or 1/0; times, dates, decimals, UUIDs and JSON values as quoted text.
csv: a header row, then one line per row; NULL is an empty field, blobs
are hex, booleans true/false, times ISO 8601.
jsonl: one object per row, {"table": NAME, "row": {column: value}}; blobs
are hex strings, times ISO 8601, decimals strings.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import IO, Any

DIALECTS = ("postgresql", "sqlite")


def write_rows(
    out: IO[str],
    fmt: str,
    table: str,
    columns: list[str],
    rows: Iterable[Sequence[Any]],
    dialect: str = "postgresql",
) -> int:
    """Write rows of table in fmt (sql, csv, jsonl) to out; the row count."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown SQL dialect {dialect!r} (known: {', '.join(DIALECTS)})")
    if fmt == "sql":
        return _write_sql(out, table, columns, rows, dialect)
    if fmt == "csv":
        return _write_csv(out, columns, rows)
    if fmt == "jsonl":
        return _write_jsonl(out, table, columns, rows)
    raise ValueError(f"unknown format {fmt!r} (known: sql, csv, jsonl)")


def quote_name(name: str) -> str:
    """An identifier in double quotes; "schema.table" becomes "schema"."table"."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def _write_sql(
    out: IO[str], table: str, columns: list[str], rows: Iterable[Sequence[Any]], dialect: str
) -> int:
    # SQLite has no schemas: its table name is one identifier, dots and all.
    name = quote_name(table) if dialect == "postgresql" else _quote_column(table)
    head = f"INSERT INTO {name} ({', '.join(_quote_column(c) for c in columns)})"
    count = 0
    for row in rows:
        values = ", ".join(sql_literal(v, dialect) for v in row)
        out.write(f"{head} VALUES ({values});\n")
        count += 1
    return count


def _quote_column(name: str) -> str:
    # A column name is one identifier even when it holds a dot.
    return '"' + name.replace('"', '""') + '"'


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_literal(value: Any, dialect: str = "postgresql") -> str:
    """value as an SQL literal of the dialect."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        if dialect == "sqlite":
            return "1" if value else "0"
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_literal(value, dialect)
    if isinstance(value, bytes | bytearray | memoryview):
        hexed = bytes(value).hex()
        return f"X'{hexed}'" if dialect == "sqlite" else f"'\\x{hexed}'"
    if isinstance(value, dict | list):
        return _text(json.dumps(value, default=_json_default))
    return _text(_plain(value))


def _float_literal(value: float, dialect: str) -> str:
    if math.isfinite(value):
        return repr(value)
    if dialect == "sqlite":
        # SQLite stores NaN as NULL and reads 9e999 as infinity.
        return "NULL" if math.isnan(value) else ("9e999" if value > 0 else "-9e999")
    return "'NaN'" if math.isnan(value) else ("'Infinity'" if value > 0 else "'-Infinity'")


def _plain(value: Any) -> str:
    """Text of a value that has no literal form of its own."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def _write_csv(out: IO[str], columns: list[str], rows: Iterable[Sequence[Any]]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    count = 0
    for row in rows:
        writer.writerow([_csv_field(v) for v in row])
        count += 1
    return count


def _csv_field(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dict | list):
        return json.dumps(value, default=_json_default)
    if isinstance(value, float):
        return repr(value)
    return _plain(value)


def _write_jsonl(
    out: IO[str], table: str, columns: list[str], rows: Iterable[Sequence[Any]]
) -> int:
    count = 0
    for row in rows:
        doc = {"table": table, "row": {c: json_value(v) for c, v in zip(columns, row, strict=True)}}
        out.write(json.dumps(doc, ensure_ascii=False) + "\n")
        count += 1
    return count


def json_value(value: Any) -> Any:
    """value in a form json.dumps writes as standard JSON."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        # JSON has no NaN or infinity: those go as strings.
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return _json_default(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, Decimal):
        return str(value)
    return _plain(value)
