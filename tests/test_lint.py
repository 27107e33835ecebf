"""The project's own checks: ruff (style, and the rule that keeps rich in the report layer)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean_and_rich_stays_in_the_report_layer() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "lite_align", "tests", "benchmarks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout[-3000:]


def test_rich_is_imported_only_by_the_report_layer() -> None:
    offenders = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "lite_align").rglob("*.py")
        if p.name not in {"report.py", "progress.py"}
        and any(line.lstrip().startswith(("import rich", "from rich")) for line in p.read_text().splitlines())
    ]
    assert offenders == []
