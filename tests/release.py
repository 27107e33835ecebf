"""Where the tests find the paper's released outputs, and the reference figures they reproduce.

The release is read where lite_align itself reads it (``lite_align.release.release_root``):
``$LITE_ALIGN_PAPER_RELEASE``, else the folder ``lite-align release fetch`` fills. Where neither
holds it, the tests that need it skip with the reason and the fix (``tests/needs.py``); CI points
LITE_ALIGN_PAPER_RELEASE at its copy and makes such a skip a failure.

The reference figures (``tests/data/paper_reference.json``) are test data: the values the paper's
released ConflictingQA outputs give under docs/method.md's definitions, and the sha256 of every
released file the tests read.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from needs import unavailable

from lite_align.release import DIR_ENV, release_root

REFERENCE = Path(__file__).parent / "data" / "paper_reference.json"


def release_dir() -> Path:
    """The folder holding ConflictingQA/ (skips the calling test when there is none)."""
    root = release_root()
    if not (root / "ConflictingQA" / "outputs").is_dir():
        unavailable(
            f"the paper's release is not in {root}",
            f"run `.venv/bin/lite-align release fetch` (about 200 MB) or set {DIR_ENV} to a copy of it",
        )
    return root


def conflictingqa() -> Path:
    return release_dir() / "ConflictingQA"


@cache
def reference() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(REFERENCE.read_text(encoding="utf-8"))
    return doc


def reference_rows(table: str) -> list[dict[str, Any]]:
    """One of the reference tables: within_prompt, cross_sampled, cross_greedy, stance."""
    rows: list[dict[str, Any]] = reference()[table]
    return rows
