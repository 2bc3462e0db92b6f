"""Typed reads of JSON documents from the store: a field of the wrong type,
or a required field missing, raises FormatError naming where it was read."""

from __future__ import annotations

import json
from datetime import datetime
from typing import cast

from catalog.errors import FormatError

JsonDoc = dict[str, object]  # a JSON object as json.loads returns it

_REQUIRED = object()


class JsonFields:
    """The fields of one JSON object; where names it in error messages."""

    def __init__(self, doc: object, where: str) -> None:
        if not isinstance(doc, dict):
            raise FormatError(f"{where}: not a JSON object")
        self.doc = cast(JsonDoc, doc)
        self.where = where

    def _get(self, name: str, default: object, types: tuple[type, ...], what: str) -> object:
        if name not in self.doc or (self.doc[name] is None and default is None):
            if default is _REQUIRED:
                raise FormatError(f"{self.where}: no {name!r}")
            return default
        value = self.doc[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise FormatError(f"{self.where}: {name!r} is not {what}")
        return value

    def text(self, name: str, default: object = _REQUIRED) -> str:
        return cast(str, self._get(name, default, (str,), "text"))

    def opt_text(self, name: str) -> str | None:
        return cast("str | None", self._get(name, None, (str,), "text"))

    def integer(self, name: str, default: object = _REQUIRED) -> int:
        return cast(int, self._get(name, default, (int,), "an integer"))

    def opt_integer(self, name: str) -> int | None:
        return cast("int | None", self._get(name, None, (int,), "an integer"))

    def flag(self, name: str, default: object = _REQUIRED) -> bool:
        return cast(bool, self._get(name, default, (bool,), "true or false"))

    def when(self, name: str) -> datetime:
        try:
            return datetime.fromisoformat(self.text(name))
        except ValueError as e:
            raise FormatError(f"{self.where}: {name!r} is not an ISO time: {e}") from e

    def texts(self, name: str, default: object = _REQUIRED) -> tuple[str, ...]:
        items = cast("list[object]", self._get(name, default, (list, tuple), "a list"))
        if not all(isinstance(v, str) for v in items):
            raise FormatError(f"{self.where}: {name!r} holds something other than text")
        return tuple(cast("list[str]", items))

    def array(self, name: str, default: object = _REQUIRED) -> list[object]:
        return list(cast("list[object]", self._get(name, default, (list, tuple), "a list")))

    def table(self, name: str, default: object = _REQUIRED) -> dict[str, object]:
        return dict(cast(JsonDoc, self._get(name, default, (dict,), "a JSON object")))

    def counts(self, name: str) -> dict[str, int]:
        """A table of integers; empty when absent."""
        table = self.table(name, {})
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in table.values()):
            raise FormatError(f"{self.where}: {name!r} holds something other than integers")
        return cast("dict[str, int]", table)

    def text_table(self, name: str) -> dict[str, str]:
        """A table of text; empty when absent."""
        table = self.table(name, {})
        if not all(isinstance(v, str) for v in table.values()):
            raise FormatError(f"{self.where}: {name!r} holds something other than text")
        return cast("dict[str, str]", table)


def load_json(data: bytes | str, where: str) -> object:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise FormatError(f"{where}: not JSON: {e}") from e


def dump_json(doc: JsonDoc) -> bytes:
    """Compact JSON, as pitr stores its documents."""
    return json.dumps(doc, separators=(",", ":")).encode()
