"""The library calls a notebook needs, one per job: run a study, read what it wrote, analyse sample
sets, render a report. Each returns plain data or the typed results (``results.Results``); none
prints, so the CLI is a thin layer over these and the modules below them.

    manifest, results = run_study(pair="gemma-smol", limit=5, samples=3, out="runs/try")
    inp = read_report("runs/try")             # a run directory or the paper's released outputs
    print(render(inp.manifest, inp.results, fmt="markdown"))
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .compare import ReportInput, load_report_input
from .report import render_document
from .results import Results
from .runner import RunOptions, execute, prepare

__all__ = ["read_report", "render", "run_study"]


def run_study(*, embedder: Any = None, **options: Any) -> tuple[dict[str, Any], Results]:
    """Generate what is missing and analyse everything, as ``lite-align run`` does; ``options``
    are ``runner.RunOptions``' fields (pair, base, chat, registry, preset, limit, samples,
    max_tokens, conditions, out, ...). Returns the manifest and the typed results."""
    manifest, results = execute(prepare(RunOptions(**options)), embedder=embedder)
    return manifest, Results.from_json(results)


def read_report(path: str | Path, **options: Any) -> ReportInput:
    """What a report shows for a run directory or released outputs (``compare.load_report_input``:
    reference, prompts, baseline, embeddings, embedder for released outputs)."""
    return load_report_input(path, **options)


def render(
    manifest: Mapping[str, Any],
    results: Results | Mapping[str, Any],
    *,
    fmt: str = "markdown",
    sets: Mapping[str, Any] | None = None,
    prompts: Mapping[int, str] | None = None,
    teacher: str | None = "chat",
    width: int = 120,
) -> str:
    """The report as text: ``fmt`` is terminal (plain, ``width`` columns), markdown, html or json."""
    return render_document(fmt, manifest, results, sets=sets, prompts=prompts, teacher=teacher, width=width)
