"""The report's tables as plain data, and the Markdown and JSON documents built from them.

The HTML report (``html_report``) draws its charts and tables from the same functions, so every
format shows the same figures:

    manifest, results --> manifest_lines / diversity_table / recover_table / explain_blocks --> Markdown

``results`` is what ``analysis.analyse`` returns (``diversity``, ``recover``, ``example``,
``finding``) plus any later parts (``explain`` with ``coverage``/``quality``/``stance``, or such
parts at the top level). Parts this module has no special layout for are laid out generically: a
dict of numbers becomes a table, a dict of such dicts becomes a grid, intervals are read from a
sibling ``ci`` dict or a ``<key>_ci`` pair. So a new numeric key shows up without a code change.

Left out: charts (HTML only) and the sample browser (HTML only).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .data import failure_text
from .metrics.registry import is_extra_key, metric, metrics, similarities, similarity
from .results import COUNT_KEYS as RESULT_COUNTS
from .results import DiversityRow, RecoverRow, Results

__all__ = [
    "Figure",
    "FigureTable",
    "Note",
    "agreement_tables",
    "diversity_measures",
    "diversity_table",
    "dropped_lines",
    "explain_blocks",
    "explain_dropped_line",
    "explain_parts",
    "manifest_brief",
    "manifest_lines",
    "recover_dropped_lines",
    "recover_table",
    "render_markdown",
    "report_json",
    "prompts_text",
    "similarity_keys",
    "stance_dropped_lines",
]

REPORT_FORMAT = "lite_align.report/1"

COUNT_KEYS = frozenset(RESULT_COUNTS)
# parts of results with a layout of their own; everything else is an "explain" part
_CORE_PARTS = frozenset({"format", "diversity", "recover", "example", "finding", "explain"})


# --------------------------------------------------------------------------------------------------
# Plain table data


@dataclass(frozen=True)
class Figure:
    """A number with an optional 95% interval.

    >>> Figure(0.4251, (0.367, 0.466)).text()
    '0.425 [0.367, 0.466]'
    >>> Figure(None).text()
    '–'
    """

    value: float | None
    ci: tuple[float, float] | None = None
    digits: int = 3

    def text(self) -> str:
        if self.value is None:
            return "–"
        out = f"{self.value:.{self.digits}f}"
        if self.ci is not None:
            out += f" [{self.ci[0]:.{self.digits}f}, {self.ci[1]:.{self.digits}f}]"
        return out


Cell = Figure | str


@dataclass(frozen=True)
class FigureTable:
    """A titled table: one row per item (a condition, a group), one cell per column."""

    title: str
    row_label: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[Cell, ...]], ...]
    note: str = ""


@dataclass(frozen=True)
class Note:
    """A line of text inside a part (e.g. an explanation sentence)."""

    label: str
    text: str


def _number(x: Any) -> float | None:
    """A finite number as float, else None (JSON nulls, NaN, bools and text are not figures)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def _interval(x: Any) -> tuple[float, float] | None:
    if isinstance(x, (list, tuple)) and len(x) == 2:
        lo, hi = _number(x[0]), _number(x[1])
        if lo is not None and hi is not None:
            return (lo, hi)
    return None


def _is_figure(key: str, value: Any) -> bool:
    return key != "ci" and not key.endswith("_ci") and not isinstance(value, bool) and isinstance(value, (int, float))


def _digits(key: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return 0
    known = metric(key)
    if known:
        return known.digits
    return 1 if abs(float(value)) >= 100 else 3


def _figure(obj: Mapping[str, Any], key: str) -> Figure:
    value = obj.get(key)
    cis = obj.get("ci")
    ci = _interval(cis.get(key)) if isinstance(cis, Mapping) else None
    ci = ci or _interval(obj.get(f"{key}_ci"))
    return Figure(_number(value), ci, _digits(key, value) if _number(value) is not None else 3)


# --------------------------------------------------------------------------------------------------
# Manifest in brief


def _mb(size: Any) -> str:
    return f"{size / 1e6:.0f} MB" if isinstance(size, (int, float)) and not isinstance(size, bool) else "? MB"


def manifest_brief(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's parts a reader needs, as plain data (the JSON report's ``manifest``)."""
    if manifest.get("kind") == "released":
        keep = ("kind", "source", "reference", "baseline", "prompts_source", "sets", "note")
        return {k: manifest[k] for k in keep if k in manifest}
    settings = manifest.get("settings", {})
    models = {
        role: {k: m.get(k) for k in ("name", "family", "size", "sha256", "backend") if m.get(k) is not None}
        for role, m in manifest.get("models", {}).items()
        if isinstance(m, Mapping)
    }
    out: dict[str, Any] = {"kind": "run", "run_dir": manifest.get("run_dir"), "models": models}
    note = manifest.get("pair_note") or _family_note(models)
    if note:
        out["pair_note"] = note
    for key in ("preset", "samples", "max_tokens", "temperature", "repetition_penalty", "seed", "k", "conditions"):
        if key in settings:
            out[key] = settings[key]
    if manifest.get("prompt_set"):
        out["prompt_set"] = manifest["prompt_set"]
    for key in ("timings", "peak_rss_mb", "engine", "status", "lite_align_version"):
        if manifest.get(key) is not None:
            out[key] = manifest[key]
    return out


_SOURCES = {"calibrated": "calibrated here", "cached": "calibrated here before", "given": "as given"}


def engine_text(engine: Any) -> str:
    """A run's ``engine`` record (role -> threads, sequences, ...) as one line; "" when absent.
    Where the record has the study's ``phases``, the line shows the context and live sequences
    each phase ran with; older records show the chosen number.

    >>> engine_text({"chat": {"model": "c", "threads": 2, "sequences": 128, "sequences_within_memory": 24,
    ...     "phases": {"teacher": {"cells": 2048, "sequences": 82}, "summarizer": {"cells": 3072, "sequences": 24}}}})
    'chat c: 2 threads × 82 sequences at 2,048 cells (teacher), 24 at 3,072 (summarizer), memory-capped from 128'
    """
    if not isinstance(engine, Mapping):
        return ""
    parts = []
    for role, e in engine.items():
        if not isinstance(e, Mapping):
            continue
        t = e.get("threads")
        text = f"{role} {e.get('model', '')}: {t} thread{'s' if t != 1 else ''} × {_sequences_text(e)}"
        if e.get("gpu_layers"):
            text += f", {e['gpu_layers']} GPU layers"
        source = _SOURCES.get(str(e.get("source")), "")
        parts.append(text + (f" ({source})" if source else ""))
    return "; ".join(parts)


def _sequences_text(e: Mapping[str, Any]) -> str:
    capped = e.get("sequences_within_memory")
    phases = e.get("phases")
    ran = [(k, v) for k, v in phases.items() if isinstance(v, Mapping)] if isinstance(phases, Mapping) else []
    if not ran:
        return f"{e.get('sequences')} sequences" + (f" (≤{capped} within the memory budget)" if capped else "")
    texts = []
    for i, (phase, r) in enumerate(ran):
        text = f"{r.get('sequences')}{' sequences' if i == 0 else ''} at {_thousands(r.get('cells'))}"
        text += (" cells" if i == 0 else "") + (f" ({phase})" if len(ran) > 1 else "")
        texts.append(text)
    chosen = e.get("sequences")
    capped_here = isinstance(chosen, int) and any(_below(r.get("sequences"), chosen) for _, r in ran)
    return ", ".join(texts) + (f", memory-capped from {chosen}" if capped_here else "")


def _below(value: Any, limit: int) -> bool:
    return isinstance(value, int) and value < limit


def _thousands(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _family_note(models: Mapping[str, Mapping[str, Any]]) -> str:
    base, chat = models.get("base", {}).get("family"), models.get("chat", {}).get("family")
    if base and chat and base != chat:
        return f"Different families ({base} base vs {chat} chat): differences mix alignment with family."
    return ""


def manifest_lines(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The manifest in brief as (label, text) lines, for the header of every format."""
    brief = manifest_brief(manifest)
    if brief.get("kind") == "released":
        lines = [("source", str(brief.get("source", "")))]
        for label, info in brief.get("sets", {}).items():
            bits = [f"{info.get('n_prompts', '?')} prompts", f"{info.get('samples', '?')} samples each"]
            if info.get("model"):
                bits.insert(0, str(info["model"]))
            if info.get("temperature") is not None:
                bits.append(f"T={info['temperature']}")
            if info.get("n_failed"):
                why = _reasons(info.get("failed_reasons"))
                failed = f"{prompts_text(_count(info['n_failed']))} dropped, an output failed"
                bits.append(f"{failed}{f' ({why})' if why else ''}")
            lines.append((label, " · ".join(bits)))
        lines.append(("reference", str(brief.get("reference") or "none (give --reference NAME for recoverability)")))
        if brief.get("baseline"):
            lines.append(("baseline", f"within-reference similarity of {brief['baseline']}"))
        lines.append(("prompts", str(brief.get("prompts_source") or "not found (give --prompts FILE)")))
        if brief.get("note"):
            lines.append(("note", str(brief["note"])))
        return lines
    lines = []
    for role, m in brief.get("models", {}).items():
        sha = str(m.get("sha256") or "")[:12]
        desc = f"{m.get('name')} ({m.get('family') or 'unknown family'}"
        desc += f", {m['backend']})" if m.get("backend") else f", {_mb(m.get('size'))}, sha256 {sha})"
        lines.append((role, desc))
    if brief.get("pair_note"):
        lines.append(("note", str(brief["pair_note"])))
    if not any(key in brief for key in ("preset", "samples", "prompt_set")):
        return lines  # a run directory without settings (written by a test or an old version)
    ps = brief.get("prompt_set", {})
    settings = [
        f"preset {brief.get('preset', '?')}",
        f"{ps.get('n_prompts', '?')} prompts from {ps.get('name', '?')}",
        f"{brief.get('samples', '?')} samples",
        f"≤{brief.get('max_tokens', '?')} new tokens",
        f"T={brief.get('temperature', '?')}",
        f"repetition penalty {brief.get('repetition_penalty', '?')}",
    ]
    lines.append(("settings", " · ".join(settings)))
    lines.append(
        ("seeds", f"run seed {brief.get('seed', '?')}; every sample's seed derives from (run seed, prompt, sample)")
    )
    timings = brief.get("timings") or {}
    if timings:
        stages = [f"{name} {_secs(timings[key])}" for key, name in _STAGES if key in timings]
        text = f"{_secs(timings.get('total_s'))} in all" + (f" ({', '.join(stages)})" if stages else "")
        if brief.get("peak_rss_mb") is not None:
            text += f" · peak memory {brief['peak_rss_mb']:.0f} MB"
        lines.append(("time", text))
    engine = engine_text(brief.get("engine"))
    if engine:
        lines.append(("engine", engine))
    return lines


_STAGES = (("generation_s", "generation"), ("analysis_s", "analysis"))


def _secs(x: Any) -> str:
    return f"{x:.0f} s" if isinstance(x, (int, float)) else "? s"


# --------------------------------------------------------------------------------------------------
# Diversity and recoverability


def rows_json(rows: Mapping[str, DiversityRow | RecoverRow | Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Typed rows (or rows as read from JSON) by their JSON keys, as the tables read them."""
    return {name: r.to_json() if isinstance(r, (DiversityRow, RecoverRow)) else r for name, r in rows.items()}


def diversity_measures(diversity: Mapping[str, DiversityRow | Mapping[str, Any]]) -> list[str]:
    """Every measure present in any row: the registered ones in their order (metrics.registry),
    then new numeric keys.

    >>> diversity_measures({"a": {"length_mean": 3.0, "jaccard_within": 0.2, "n_prompts": 4, "novelty": 0.5}})
    ['jaccard_within', 'length_mean', 'novelty']
    """
    diversity = rows_json(diversity)
    present: list[str] = []
    for row in diversity.values():
        for key, value in row.items():
            if key not in present and key not in COUNT_KEYS and _is_figure(key, value) and not is_extra_key(key):
                present.append(key)
    for row in diversity.values():  # a measure that is null everywhere is still a measure
        for key in row.get("ci", {}) if isinstance(row.get("ci"), Mapping) else ():
            if key not in present and key not in COUNT_KEYS:
                present.append(key)
    order = [m.key for m in metrics()]
    return sorted(present, key=lambda k: (order.index(k) if k in order else len(order), present.index(k)))


def measure_label(key: str) -> str:
    known = metric(key)
    return known.label if known else key.replace("_", " ")


def measure_reading(key: str) -> str:
    """How to read a measure ("lower = more diverse"); "" for an unregistered one."""
    known = metric(key)
    return known.reading if known else ""


def measure_digits(key: str) -> int:
    known = metric(key)
    return known.digits if known else 3


def diversity_table(diversity: Mapping[str, DiversityRow | Mapping[str, Any]]) -> FigureTable:
    diversity = rows_json(diversity)
    measures = diversity_measures(diversity)
    rows = []
    for name, row in diversity.items():
        n = _number(row.get("n_prompts"))
        cells: list[Cell] = [Figure(n, None, 0)]
        cells += [_figure(row, key) for key in measures]
        rows.append((name, tuple(cells)))
    notes = [f"{measure_label(k)}: {measure_reading(k)}" for k in measures if measure_reading(k)]
    vocab = vocab_note(diversity)
    if vocab:
        notes.append(vocab)
    return FigureTable(
        title="Diversity",
        row_label="condition",
        columns=("prompts", *(measure_label(k) for k in measures)),
        rows=tuple(rows),
        note="Within-prompt measures, mean over prompts with 95% bootstrap intervals over prompts. "
        + "; ".join(notes)
        + ".",
    )


def vocab_note(diversity: Mapping[str, DiversityRow | Mapping[str, Any]]) -> str:
    """Which vocabulary size EAD used per set ("" when no row has EAD): the generating model's
    where known, else the stated default."""
    parts = []
    for name, row in rows_json(diversity).items():
        size = row.get("ead_vocab_size")
        if isinstance(size, int) and not isinstance(size, bool):
            known = row.get("ead_vocab_size_known") is True
            parts.append(f"{name} {size}{'' if known else ' (default: the model is unknown)'}")
    return ("EAD's vocabulary size: " + ", ".join(parts)) if parts else ""


def agreement_tables(diversity: Mapping[str, DiversityRow | Mapping[str, Any]]) -> list[FigureTable]:
    """Each set's metric agreement table (its row's ``agreement``): Spearman's rho over prompts
    between every pair of measures, oriented so that + means they rank the prompts' diversity
    alike; the columns are numbered as the rows."""
    out = []
    for name, row in rows_json(diversity).items():
        table = row.get("agreement")
        if not isinstance(table, Mapping) or not table.get("keys"):
            continue
        keys = [str(k) for k in table["keys"]]
        rho = table.get("rho") or []
        rows = []
        for i, key in enumerate(keys):
            cells = tuple(Figure(_number(v), None, 2) for v in (rho[i] if i < len(rho) else []))
            rows.append((f"{i + 1}. {measure_label(key)}", cells))
        out.append(
            FigureTable(
                title=f"Metric agreement: {name}",
                row_label="measure",
                columns=tuple(str(i + 1) for i in range(len(keys))),
                rows=tuple(rows),
                note=f"Spearman's rho over the {table.get('n_prompts', '?')} prompts of {name} between every pair of "
                "measures, each turned so that higher = more diverse: + means the two rank the prompts' "
                "diversity alike, – (a dash) undefined (fewer than 3 prompts with both, or a constant measure).",
            )
        )
    return out


def similarity_keys(recover: Mapping[str, RecoverRow | Mapping[str, Any]]) -> list[str]:
    """The similarities present (registered ones first, in their order): keys whose value holds a
    ``ratio``."""
    recover = rows_json(recover)
    present: list[str] = []
    for row in recover.values():
        for key, value in row.items():
            if isinstance(value, Mapping) and "ratio" in value and key not in present:
                present.append(key)
    order = [s.key for s in similarities()]
    return sorted(present, key=lambda k: (order.index(k) if k in order else len(order), present.index(k)))


def similarity_label(key: str) -> str:
    known = similarity(key)
    return known.label if known else key.replace("_", " ")


def recover_table(recover: Mapping[str, RecoverRow | Mapping[str, Any]], reference: str = "chat") -> FigureTable:
    recover = rows_json(recover)
    sims = similarity_keys(recover)
    columns: list[str] = []
    for key in sims:
        label = similarity_label(key)
        columns += [f"{label}: cross", f"{label}: baseline", f"{label}: ratio"]
    rows = []
    for name, row in recover.items():
        cells: list[Cell] = []
        for key in sims:
            r = row.get(key)
            if not isinstance(r, Mapping):
                cells += [Figure(None)] * 3
                continue
            ratio = Figure(_number(r.get("ratio")), _interval(r.get("ratio_ci")), 2)
            cells += [_figure(r, "cross"), _figure(r, "baseline"), ratio]
        cells.append(str(row.get("verdict", "")))
        rows.append((name, tuple(cells)))
    return FigureTable(
        title=f"Recoverability (reference: {reference}, sample 0)",
        row_label="condition",
        columns=(*columns, "verdict"),
        rows=tuple(rows),
        note="cross = similarity of the condition's answers to the teacher's sample 0; baseline = the teacher's "
        "other samples to its sample 0; ratio = cross / baseline with a paired 95% bootstrap interval. A ratio of 1 "
        "means the condition answers as much like the teacher as the teacher's own samples do. Verdict: recovered "
        "when the ratio's interval reaches 1, partly when the ratio is at least 0.75, on two of the three "
        "similarities when all three are computed (else on one).",
    )


# --------------------------------------------------------------------------------------------------
# Failed prompts: how many were dropped, and why


def _count(x: Any) -> int:
    return x if isinstance(x, int) and not isinstance(x, bool) else 0


def prompts_text(n: int) -> str:
    """A count of prompts in words.

    >>> prompts_text(1), prompts_text(2)
    ('1 prompt', '2 prompts')
    """
    return f"{n} prompt" if n == 1 else f"{n} prompts"


def _reasons(x: Any) -> str:
    return failure_text({str(k): _count(v) for k, v in x.items()}) if isinstance(x, Mapping) and x else ""


def dropped_lines(diversity: Mapping[str, DiversityRow | Mapping[str, Any]]) -> list[str]:
    """One sentence per set that lost prompts to failed outputs.

    >>> dropped_lines({"a": {"n_prompts": 2, "n_failed": 48, "failed_reasons": {"validation error": 48}}})
    ['a: 48 of 50 prompts dropped because an output failed (validation error ×48); its figures cover the other 2.']
    """
    out = []
    for name, row in rows_json(diversity).items():
        failed = _count(row.get("n_failed"))
        if failed:
            kept = _count(row.get("n_prompts"))
            why = _reasons(row.get("failed_reasons"))
            out.append(
                f"{name}: {failed} of {failed + kept} prompts dropped because an output failed"
                f"{f' ({why})' if why else ''}; its figures cover the other {kept}."
            )
    return out


def recover_dropped_lines(recover: Mapping[str, RecoverRow | Mapping[str, Any]]) -> list[str]:
    """One sentence per compared set where a file lost prompts: the figures cover only the prompts
    valid in every file.

    >>> row = {"jaccard": {"ratio": 1.0, "n_prompts": 47}, "n_failed": 2, "reference_n_failed": 1}
    >>> recover_dropped_lines({"a": row})
    ['a: compared over the 47 prompts valid in every file; failed prompts left out: 2 in it, 1 in the reference.']
    """
    out = []
    for name, row in rows_json(recover).items():
        counts = [(_count(row.get("n_failed")), "in it"), (_count(row.get("reference_n_failed")), "in the reference")]
        if "baseline_n_failed" in row:
            counts.append((_count(row.get("baseline_n_failed")), "in the baseline"))
        if not any(n for n, _ in counts):
            continue
        sims = [v for v in row.values() if isinstance(v, Mapping) and "ratio" in v]
        n = _count(sims[0].get("n_prompts")) if sims else 0
        listed = ", ".join(f"{k} {where}" for k, where in counts)
        out.append(
            f"{name}: compared over the {prompts_text(n)} valid in every file; failed prompts left out: {listed}."
        )
    return out


def stance_dropped_lines(stance: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One sentence per judge file that lost prompts to failed judge requests."""
    out = []
    for name, row in stance.items():
        failed = _count(row.get("n_failed"))
        if failed:
            why = _reasons(row.get("failed_reasons"))
            out.append(
                f"{row.get('label', name)}: {prompts_text(failed)} dropped because a judge request failed"
                f"{f' ({why})' if why else ''}; the shares cover the other {_count(row.get('n_prompts'))}."
            )
    return out


def explain_dropped_line(explain: Mapping[str, Any]) -> str:
    """The explain section's failed prompts in one sentence ("" when none failed)."""
    failed = explain.get("n_failed")
    if not isinstance(failed, Mapping) or not any(_count(v) for v in failed.values()):
        return ""
    found = explain.get("failed_reasons")
    reasons: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    parts = []
    for role, n in failed.items():
        why = _reasons(reasons.get(role))
        parts.append(f"{_count(n)} in {explain.get(role, role)}{f' ({why})' if why else ''}")
    return (
        f"failed prompts left out: {', '.join(parts)}; the figures cover the "
        f"{prompts_text(_count(explain.get('n_prompts')))} valid in both."
    )


# --------------------------------------------------------------------------------------------------
# Explain parts (coverage, quality, stance, ...), laid out generically


def explain_parts(results: Results | Mapping[str, Any]) -> dict[str, Any]:
    """The parts beyond diversity and recoverability: ``results["explain"]``'s items, then any
    other top-level part (e.g. ``quality`` or ``stance`` stored beside ``explain``)."""
    if isinstance(results, Results):
        results = results.parts
    parts: dict[str, Any] = {}
    explain = results.get("explain")
    if isinstance(explain, Mapping):
        parts.update({k: v for k, v in explain.items() if k not in ("n_failed", "failed_reasons")})
        dropped = explain_dropped_line(explain)
        if dropped:
            parts["failed prompts"] = dropped
    elif explain is not None:
        parts["explain"] = explain
    for key, value in results.items():
        if key not in _CORE_PARTS and value not in (None, {}, [], ""):
            parts.setdefault(key, value)
    return parts


def explain_blocks(title: str, obj: Any) -> list[FigureTable | Note]:
    """Tables and notes for one part.

    A dict whose values are all dicts of numbers is a grid (rows = its keys); a dict's own numbers
    make a one-column table; text becomes a note; nested dicts are laid out in turn.

    >>> [b.columns for b in explain_blocks("coverage", {"wordbag": {"aligned_single": 0.5, "base_single": 0.2}})]
    [('aligned_single', 'base_single')]
    """
    if isinstance(obj, str):
        return [Note(title, obj)]
    if not isinstance(obj, Mapping):
        return [Note(title, _short_json(obj))]
    grid = _grid(title, obj)
    if grid is not None:
        return [grid]
    blocks: list[FigureTable | Note] = []
    keys = [k for k, v in obj.items() if _is_figure(str(k), v)]
    if keys:
        rows = tuple((str(k), (_figure(obj, k),)) for k in keys)
        blocks.append(FigureTable(title=title, row_label="figure", columns=("value",), rows=rows))
    for key, value in obj.items():
        key = str(key)
        if key == "ci" or key.endswith("_ci") or _is_figure(key, value):
            continue
        if isinstance(value, Mapping):
            blocks += explain_blocks(f"{title} · {key}", value)
        elif value is not None:
            blocks.append(Note(f"{title} · {key}", value if isinstance(value, str) else _short_json(value)))
    return blocks


def _grid(title: str, obj: Mapping[str, Any]) -> FigureTable | None:
    items = [(str(k), v) for k, v in obj.items() if k != "ci" and not str(k).endswith("_ci")]
    if not items or not all(isinstance(v, Mapping) for _, v in items):
        return None
    columns: list[str] = []
    for _, row in items:
        for key, value in row.items():
            key = str(key)
            if key == "ci" or key.endswith("_ci"):
                continue
            if not (value is None or _is_figure(key, value)):
                return None
            if key not in columns:
                columns.append(key)
    if not columns:
        return None
    rows = tuple((name, tuple(_figure(row, c) for c in columns)) for name, row in items)
    return FigureTable(title=title, row_label=title.split(" · ")[-1], columns=tuple(columns), rows=rows)


def _short_json(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------------
# Markdown


def _md_cell(cell: Cell) -> str:
    text = cell.text() if isinstance(cell, Figure) else cell
    return " ".join(text.split()).replace("|", "\\|")


def markdown_table(table: FigureTable) -> str:
    header = [table.row_label, *table.columns]
    numeric = [any(isinstance(cells[i], Figure) for _, cells in table.rows) for i in range(len(table.columns))]
    align = ["---"] + ["---:" if n else "---" for n in numeric]
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "|".join(align) + "|"]
    for name, cells in table.rows:
        lines.append("| " + " | ".join([_md_cell(name), *map(_md_cell, cells)]) + " |")
    return "\n".join(lines)


def _bullets(lines: list[str]) -> list[str]:
    return [*(f"- {_md_cell(line)}" for line in lines), ""] if lines else []


def render_markdown(
    manifest: Mapping[str, Any], results: Results | Mapping[str, Any], *, reference: str = "chat"
) -> str:
    """The report as Markdown: the manifest in brief, then every table, for notes and papers."""
    results = Results.from_json(results)
    out = ["# lite_align report", ""]
    out += [f"- **{_md_cell(label)}**: {_md_cell(text)}" for label, text in manifest_lines(manifest)]
    out.append("")
    if results.finding:
        out += [f"**Finding.** {results.finding}", ""]
    if results.diversity:
        table = diversity_table(results.diversity)
        out += ["## Diversity", "", table.note, "", markdown_table(table), ""]
        out += _bullets(dropped_lines(results.diversity))
        agreement = agreement_tables(results.diversity)
        if agreement:
            out += ["## Metric agreement", ""]
            for agreed in agreement:
                out += [f"**{_md_cell(agreed.title)}**", "", agreed.note, "", markdown_table(agreed), ""]
    if results.recover:
        table = recover_table(results.recover, reference)
        out += [f"## {table.title}", "", table.note, "", markdown_table(table), ""]
        out += _bullets(recover_dropped_lines(results.recover))
    parts = explain_parts(results)
    if parts:
        out += ["## Explaining the drop", ""]
        for name, obj in parts.items():
            out += [f"### {name}", ""]
            for block in explain_blocks(name, obj):
                if isinstance(block, Note):
                    out += [block.text if block.label == name else f"*{_md_cell(block.label)}*: {block.text}", ""]
                else:
                    if block.title != name:
                        out += [f"**{_md_cell(block.title)}**", ""]
                    out += [markdown_table(block), ""]
    return "\n".join(out).rstrip() + "\n"


def report_json(manifest: Mapping[str, Any], results: Results | Mapping[str, Any]) -> dict[str, Any]:
    """The JSON report: the manifest in brief and the results as they are."""
    return {
        "format": REPORT_FORMAT,
        "manifest": manifest_brief(manifest),
        "results": Results.from_json(results).without("format").to_json(),
    }
