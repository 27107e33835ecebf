"""Where the tests find the paper's released outputs, and REFERENCE.md's tables.

The release is shared data (real outputs of real models): ``$LITE_ALIGN_PAPER_RELEASE``, else
``shared/data/paper-release`` beside the repository (``../shared``), else ``/work/shared``. When it
is missing, the tests that need it fail with a message saying so; they never skip.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

_BESIDE_REPO = Path(__file__).resolve().parents[2] / "shared" / "data" / "paper-release"
_CANDIDATES = (_BESIDE_REPO, Path("/work/shared/data/paper-release"))


@cache
def release_dir() -> Path:
    """The folder holding REFERENCE.md and ConflictingQA/."""
    env = os.environ.get("LITE_ALIGN_PAPER_RELEASE")
    candidates = (Path(env),) if env else _CANDIDATES
    for root in candidates:
        if (root / "REFERENCE.md").is_file():
            return root
    raise AssertionError(
        f"the paper's release is not at {', '.join(map(str, candidates))}; set LITE_ALIGN_PAPER_RELEASE"
    )


def conflictingqa() -> Path:
    return release_dir() / "ConflictingQA"


def reference_tables(heading: str) -> list[list[dict[str, str]]]:
    """The markdown tables under the REFERENCE.md section whose heading starts with ``heading``."""
    text = (release_dir() / "REFERENCE.md").read_text(encoding="utf-8")
    section = next(s for s in text.split("\n## ") if s.startswith(heading))
    tables: list[list[str]] = [[]]
    for line in section.splitlines():
        if line.startswith("|"):
            tables[-1].append(line)
        elif tables[-1]:
            tables.append([])

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split("|")]

    return [[dict(zip(cells(t[0]), cells(row), strict=True)) for row in t[2:]] for t in tables if t]
