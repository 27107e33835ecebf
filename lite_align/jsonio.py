"""JSON from user files, parsed so that no input can crash a reader.

``json.loads`` raises ``RecursionError`` (not ``ValueError``) on input nested about a thousand
levels deep (``'[' * 100000``), and data parsed just under that limit can still overflow the stack
of whatever walks it next. :func:`loads` refuses anything nested deeper than :data:`MAX_DEPTH`
levels with a ``json.JSONDecodeError``, so every reader's ``ValueError`` handler turns it into its
one-line message. lite_align's own files nest at most about ten levels.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MAX_DEPTH = 100


def loads(text: str | bytes) -> Any:
    """``json.loads``, refusing documents nested deeper than ``MAX_DEPTH`` levels.

    >>> loads('{"a": [1, 2]}')
    {'a': [1, 2]}
    >>> loads("[" * 100000)
    Traceback (most recent call last):
    json.decoder.JSONDecodeError: nested deeper than 100 levels: line 1 column 1 (char 0)
    """
    try:
        obj = json.loads(text)
    except RecursionError:
        raise _too_deep() from None
    opening = text.count("[") + text.count("{") if isinstance(text, str) else text.count(b"[") + text.count(b"{")
    if opening > MAX_DEPTH and depth(obj) > MAX_DEPTH:  # few brackets: it cannot be deep
        raise _too_deep()
    return obj


def depth(obj: Any) -> int:
    """Levels of lists and objects (a scalar: 0), walked without recursion.

    >>> depth(1), depth([]), depth({"a": [[1]]})
    (0, 1, 3)
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def _too_deep() -> json.JSONDecodeError:
    return json.JSONDecodeError(f"nested deeper than {MAX_DEPTH} levels", "", 0)


class KeyedJsonFile:
    """A small cache file of entries by key: ``{"format": FORMAT, "entries": {key: value}}``. A
    file that cannot be read, or of another format, counts as empty (and is rewritten on the next
    ``put``); a file that cannot be written is skipped. Writes are atomic (a temporary file, then
    a rename)."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = Path(path)
        self.format = fmt

    def entries(self) -> dict[str, Any]:
        try:
            data = loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("format") != self.format:
            return {}
        found = data.get("entries")
        return found if isinstance(found, dict) else {}

    def get(self, key: str) -> Any:
        return self.entries().get(key)

    def put(self, key: str, value: Any) -> None:
        entries = self.entries()
        entries[key] = value
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"format": self.format, "entries": entries}, indent=1) + "\n")
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
