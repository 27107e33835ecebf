"""The terminal report: the only module of the library that imports rich.

Every function takes the plain dicts that analysis.py, the metrics and the store produce, so a
report can be rendered again from ``results.json`` and ``manifest.json`` without regenerating.
"""

from __future__ import annotations

import io
import json
import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.columns import Columns
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .errors import ConfigError
from .html_report import render_html
from .markdown_report import (
    FigureTable,
    diversity_measures,
    dropped_lines,
    engine_text,
    explain_blocks,
    explain_dropped_line,
    explain_parts,
    manifest_lines,
    measure_digits,
    measure_label,
    prompts_text,
    recover_dropped_lines,
    render_markdown,
    report_json,
    rows_json,
    similarity_keys,
    similarity_label,
    stance_dropped_lines,
)
from .metrics.registry import metric, metrics, similarities, similarity
from .results import DiversityRow, RecoverRow, Results


def console(width: int | None = None, file: Any = None) -> Console:
    return Console(width=width, file=file or sys.stdout, highlight=False, soft_wrap=False)


def print_json(doc: Any) -> None:
    """The one JSON document of a --json command, on stdout, nothing else there."""
    sys.stdout.write(json.dumps(_clean_json(doc), indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def render_json_text(doc: Any) -> str:
    """A JSON document as text (NaN and infinities as null), for ``write_output``."""
    return json.dumps(_clean_json(doc), indent=2, ensure_ascii=False) + "\n"


def _clean_json(x: Any) -> Any:
    if isinstance(x, float):
        return None if math.isnan(x) or math.isinf(x) else x
    if isinstance(x, Mapping):
        return {str(k): _clean_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean_json(v) for v in x]
    return x


def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return "–"
    return f"{x:.{digits}f}"


def _ci(ci: Any, digits: int = 3) -> str:
    r"""An interval as text. Brackets are escaped for rich markup (``\[``), which would otherwise
    measure "[0.1, 0.2]" as a tag of width 0 and cut the cell."""
    if not ci or len(ci) != 2 or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in ci):
        return ""
    return f"\\[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def short_label(name: str, width: int = 36) -> str:
    """A path key shortened for a table cell: its last components."""
    if len(name) <= width or "/" not in name:
        return name
    parts = name.rstrip("/").split("/")
    out = parts[-1]
    for part in reversed(parts[:-1]):
        if len(out) + len(part) + 1 > width - 2:
            break
        out = f"{part}/{out}"
    return "…/" + out


# --- diversity -------------------------------------------------------------------------------


def _panel_label(key: str) -> str:
    known = metric(key)
    return known.panel_label if known else measure_label(key)


def diversity_panel(name: str, row: DiversityRow | Mapping[str, Any]) -> Panel:
    """One set's measures: the registered ones in report order, then any other figure it holds."""
    row = row.to_json() if isinstance(row, DiversityRow) else row
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    t.add_column("measure")
    t.add_column("mean", justify="right")
    t.add_column("95% CI", justify="right", style="dim", no_wrap=True)
    cis = row.get("ci", {})
    for key in diversity_measures({name: row}):
        if key in row and key != "n_duplicates":
            digits = measure_digits(key)
            t.add_row(_panel_label(key), _f(row[key], digits), _ci(cis.get(key), digits))
    sub = f"{row.get('n_prompts', '?')} prompts · {row.get('n_responses', '?')} responses"
    if row.get("n_failed"):
        sub += f" · {prompts_text(row['n_failed'])} dropped (failed)"
    if row.get("n_duplicates"):
        sub += f" · {row['n_duplicates']} repeated lines read once"
    if isinstance(row.get("ead_vocab_size"), int):
        default = "" if row.get("ead_vocab_size_known") is True else " (default)"
        sub += f" · EAD vocabulary {row['ead_vocab_size']}{default}"
    return Panel(t, title=f"[bold]{short_label(name)}[/bold]", subtitle=sub, expand=False)


def render_diversity(
    con: Console, table: Mapping[str, DiversityRow | Mapping[str, Any]], title: str = "Diversity"
) -> None:
    con.rule(f"[bold]{title}[/bold] — within-prompt measures, mean over prompts with 95% bootstrap intervals")
    con.print(Columns([diversity_panel(n, r) for n, r in table.items()], equal=False))
    con.print(Text("↓ lower is more diverse, ↑ higher is more diverse; rates are shares of responses.", style="dim"))
    _print_dropped(con, dropped_lines(table))


def _print_dropped(con: Console, lines: Sequence[str]) -> None:
    for line in lines:
        con.print(Text(line, style="yellow"))


# --- recoverability --------------------------------------------------------------------------


def _verdict_cell(v: str) -> str:
    style = {"recovered": "green", "partly": "yellow", "not": "red"}.get(v, "")
    return f"[{style}]{v}[/{style}]" if style else v


def _sim_short(key: str) -> str:
    known = similarity(key)
    return (known.short or known.label) if known else key


def _recover_wide(table: Mapping[str, Mapping[str, Any]], present: list[tuple[str, str]]) -> Table:
    t = Table(box=box.SIMPLE_HEAVY)
    t.add_column("condition", style="bold", no_wrap=True)
    for _, label in present:
        t.add_column(f"{label}\ncross / baseline", justify="right", no_wrap=True)
        t.add_column("ratio \\[95% CI]", justify="right", no_wrap=True)
    t.add_column("verdict", no_wrap=True)
    for name, row in table.items():
        out = [short_label(name)]
        for key, _ in present:
            r = row.get(key) or {}
            out += [
                f"{_f(r.get('cross'))} / {_f(r.get('baseline'))}" if r else "–",
                f"{_f(r.get('ratio'), 2)} {_ci(r.get('ratio_ci'), 2)}" if r else "–",
            ]
        t.add_row(*out, _verdict_cell(row.get("verdict", "")))
    return t


def _recover_long(table: Mapping[str, Mapping[str, Any]], present: list[tuple[str, str]]) -> Table:
    t = Table(box=box.SIMPLE_HEAVY, show_edge=False, pad_edge=False)
    t.add_column("condition", style="bold", no_wrap=True)
    for col in ("measure", "cross", "baseline", "ratio \\[95% CI]"):
        t.add_column(col, justify="left" if col == "measure" else "right", no_wrap=True)
    t.add_column("verdict", no_wrap=True)
    for name, row in table.items():
        for i, (key, _) in enumerate(present):
            r = row.get(key) or {}
            t.add_row(
                short_label(name) if i == 0 else "",
                _sim_short(key),
                _f(r.get("cross")),
                _f(r.get("baseline")),
                f"{_f(r.get('ratio'), 2)} {_ci(r.get('ratio_ci'), 2)}",
                _verdict_cell(row.get("verdict", "")) if i == 0 else "",
                end_section=i == len(present) - 1,
            )
    return t


def render_recover(con: Console, table: Mapping[str, RecoverRow | Mapping[str, Any]], reference: str) -> None:
    """One row per condition: cross, baseline and ratio [95% CI] per similarity, and a verdict; a
    terminal too narrow for that gets one row per condition and similarity instead."""
    con.rule(f"[bold]Recoverability[/bold] — similarity to the teacher's sample 0 ({short_label(reference)})")
    table = rows_json(table)
    present = [(k, _sim_terminal(k)) for k in similarity_keys(table)]
    t = _recover_wide(table, present)
    natural = Measurement.get(con, con.options.update_width(10_000), t).maximum
    if natural > con.width:
        t = _recover_long(table, present)
    con.print(t)
    _print_dropped(con, recover_dropped_lines(table))
    con.print(
        Text(
            "ratio = cross / baseline; 1 means the condition answers as much like the teacher as the teacher's own "
            "samples do. Verdict: recovered when the interval reaches 1 on two of three similarities, partly when the "
            "ratio is at least 0.75 on two of three (one of one when only word-bag Jaccard is computed).",
            style="dim",
        )
    )


def _sim_terminal(key: str) -> str:
    known = similarity(key)
    return (known.terminal_label or known.label) if known else similarity_label(key)


def render_example(con: Console, ex: Mapping[str, Any] | None) -> None:
    if not ex:
        return
    con.rule(f"[bold]One prompt, side by side[/bold] — prompt {ex.get('prompt_id')}: {ex.get('prompt', '')}")
    t = Table(box=box.MINIMAL, show_header=True, expand=True)
    t.add_column("condition", style="bold", no_wrap=True)
    t.add_column("first answer (truncated)")
    for name, text in ex.get("answers", {}).items():
        t.add_row(name, text)
    con.print(t)


# --- run ------------------------------------------------------------------------------------


def render_header(con: Console, manifest: Mapping[str, Any]) -> None:
    settings = manifest.get("settings", {})
    models = manifest.get("models", {})
    lines = []
    for role in ("base", "chat"):
        m = models.get(role)
        if m:
            size = m.get("size")
            mb = f"{size / 1e6:.0f} MB" if isinstance(size, (int, float)) else "?"
            lines.append(
                f"[bold]{role}[/bold]  {m.get('name')}  ({m.get('family') or 'unknown family'}, {mb}, "
                f"sha256 {str(m.get('sha256', ''))[:12]})"
            )
    note = manifest.get("pair_note")
    if note:
        lines.append(f"[yellow]note[/yellow]  {note}")
    ps = manifest.get("prompt_set", {})
    lines.append(
        f"[bold]preset[/bold] {settings.get('preset')} · {ps.get('n_prompts')} prompts from {ps.get('name')} · "
        f"{settings.get('samples')} samples · ≤{settings.get('max_tokens')} new tokens"
        f" · T={settings.get('temperature')}"
        f" · repetition penalty {settings.get('repetition_penalty')} · seed {settings.get('seed')}"
    )
    timings = manifest.get("timings", {})
    if timings:
        lines.append(
            f"[bold]time[/bold] {timings.get('total_s', 0):.0f} s in all · peak memory "
            f"{manifest.get('peak_rss_mb', 0):.0f} MB"
        )
    engine = engine_line(manifest.get("engine"))
    if engine:
        lines.append(f"[bold]engine[/bold] {escape(engine)}")
    dropped = manifest.get("dropped_examples") or {}
    if dropped:
        lines.append(
            "[yellow]context[/yellow] in-context examples dropped to fit the base model's context: "
            + ", ".join(f"{c} {n}" for c, n in dropped.items())
        )
    skipped = manifest.get("skipped") or []
    if skipped:
        shown = ", ".join(f"{x.get('condition')} prompt {x.get('prompt_id')}" for x in skipped[:6])
        more = f" and {len(skipped) - 6} more" if len(skipped) > 6 else ""
        lines.append(f"[yellow]skipped[/yellow] too long for the model's context: {shown}{more} (see manifest.json)")
    con.print(Panel("\n".join(lines), title="[bold]lite_align study[/bold]", expand=False))


def engine_line(engine: Any) -> str:
    """The manifest's ``engine`` record in one line: threads and live sequences per model.

    >>> engine_line({"base": {"model": "g", "threads": 2, "sequences": 40, "gpu_layers": 0, "source": "cached"}})
    'base g: 2 threads × 40 sequences (calibrated here before)'
    """
    return engine_text(engine)


def render_summary(con: Console, results: Results | Mapping[str, Any]) -> None:
    """One row per condition: the headline diversity and recovery figures (the registered metrics
    and similarities with a ``glance`` column), means only (the intervals follow in the detailed
    tables)."""
    results = Results.from_json(results)
    div, rec = rows_json(results.diversity), rows_json(results.recover or {})
    glance = [m for m in metrics() if m.glance]
    sims = [s for s in similarities() if s.glance]
    names = list(dict.fromkeys([*div, *rec]))
    if not names:
        return
    t = Table(
        title="At a glance: within-prompt diversity, and recovery ratios to the teacher (means; intervals below)",
        box=box.SIMPLE_HEAVY,
        show_edge=False,
        pad_edge=False,
    )
    t.add_column("condition", style="bold", no_wrap=True)
    for col in [m.glance for m in glance] + [s.glance for s in sims]:
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("verdict", no_wrap=True)
    for name in names:
        d, r = div.get(name, {}), rec.get(name, {})
        t.add_row(
            short_label(name),
            *[_f(d.get(m.key), m.digits if m.glance_digits is None else m.glance_digits) if d else "" for m in glance],
            *[_f((r.get(s.key) or {}).get("ratio"), 2) if r else "" for s in sims],
            _verdict_cell(r.get("verdict", "")) if r else ("teacher" if name == "chat" else ""),
        )
    con.print(t)


def render_body(con: Console, results: Results | Mapping[str, Any], *, reference: str = "chat") -> None:
    """Everything below the header, for a run and for released outputs alike."""
    results = Results.from_json(results)
    render_summary(con, results)
    if results.finding:
        con.print(Text("Finding: " + results.finding, style="bold"))
    if results.diversity:
        render_diversity(con, results.diversity)
    if results.recover:
        render_recover(con, results.recover, reference=reference)
    render_example(con, results.example)
    explained = results.get("explain")
    if isinstance(explained, Mapping) and "raw_diversity" in explained:
        render_explain(con, explained)
        others = explain_parts(results.without("explain"))
    else:
        others = explain_parts(results)
    for name, obj in others.items():  # parts this renderer has no layout for: generic tables
        con.rule(f"[bold]{escape(name)}[/bold]")
        for block in explain_blocks(name, obj):
            if isinstance(block, FigureTable):
                t = Table(title=block.title, box=box.SIMPLE_HEAVY)
                t.add_column(block.row_label)
                for col in block.columns:
                    t.add_column(col, justify="right")
                for row_name, cells in block.rows:
                    t.add_row(row_name, *(c if isinstance(c, str) else c.text() for c in cells))
                con.print(t)
            else:
                con.print(Text(f"{block.label}: {block.text}"))


def render_run(con: Console, manifest: Mapping[str, Any], results: Results | Mapping[str, Any]) -> None:
    render_header(con, manifest)
    render_body(con, results)
    run_dir = manifest.get("run_dir")
    if run_dir:
        con.print(Text(f"Samples, manifest and results are in {run_dir}", style="dim"))


def render_report(
    con: Console, manifest: Mapping[str, Any], results: Results | Mapping[str, Any], *, reference: str = "chat"
) -> None:
    """``lite-align report --format terminal``: a run (as render_run) or released outputs."""
    if manifest.get("kind") == "released":
        lines = [f"[bold]{escape(label)}[/bold]  {escape(text)}" for label, text in manifest_lines(manifest)]
        con.print(Panel("\n".join(lines), title="[bold]released outputs[/bold]", expand=False))
    else:
        render_header(con, manifest)
    render_body(con, results, reference=reference)


def render_compare(con: Console, doc: Mapping[str, Any]) -> None:
    """``lite-align compare``: B − A per condition and measure, with paired 95% intervals."""
    a, b = doc["a"], doc["b"]
    con.print(
        Panel(
            f"[bold]A[/bold]  {escape(str(a['path']))}  {escape(str(a.get('models') or ''))} "
            f"(preset {a.get('preset')})\n"
            f"[bold]B[/bold]  {escape(str(b['path']))}  {escape(str(b.get('models') or ''))} "
            f"(preset {b.get('preset')})\n"
            f"{doc['n_shared_prompts']} shared prompts, matched by {escape(doc['matched_by'])}",
            title="[bold]Comparing two runs[/bold]",
            expand=False,
        )
    )
    t = Table(box=box.SIMPLE_HEAVY)
    t.add_column("condition")
    t.add_column("measure")
    for col in ("A", "B", "B − A [95% CI]", "prompts"):
        t.add_column(col, justify="right")
    for cond, row in doc["conditions"].items():
        entries = [(measure_label(k), v, measure_digits(k)) for k, v in row.get("diversity", {}).items()]
        for sim, parts in row.get("recover", {}).items():
            entries += [(f"{similarity_label(sim)}: {p}", parts[p], 3 if p != "ratio" else 2) for p in parts]
        for i, (label, v, digits) in enumerate(entries):
            lo, hi = v["ci"]
            apart = lo is not None and hi is not None and (lo > 0 or hi < 0)
            diff = f"{_f(v['diff'], digits)} {_ci(v['ci'], digits)}"
            t.add_row(
                cond if i == 0 else "",
                label,
                _f(v["a"], digits),
                _f(v["b"], digits),
                f"[bold]{diff}[/bold]" if apart else diff,
                str(v["n"]),
                end_section=i == len(entries) - 1,
            )
    con.print(t)
    notes = [doc["note"], "Bold: the interval excludes 0."]
    if doc.get("only_in_a") or doc.get("only_in_b"):
        only_a, only_b = ", ".join(doc["only_in_a"]) or "–", ", ".join(doc["only_in_b"]) or "–"
        notes.append(f"Only in A: {only_a}; only in B: {only_b}.")
    for line in notes:
        con.print(Text(line, style="dim"))


REPORT_FORMATS = ("terminal", "html", "markdown", "json")


def render_document(
    fmt: str,
    manifest: Mapping[str, Any],
    results: Results | Mapping[str, Any],
    *,
    sets: Mapping[str, Any] | None = None,
    prompts: Mapping[int, str] | None = None,
    teacher: str | None = "chat",
    width: int = 120,
) -> str:
    """The report in one of REPORT_FORMATS, as text (terminal: plain, ``width`` columns)."""
    if fmt == "html":
        return render_html(manifest, results, sets, prompts, teacher=teacher)
    if fmt == "markdown":
        return render_markdown(manifest, results, reference=teacher or "none")
    if fmt == "json":
        return json.dumps(_clean_json(report_json(manifest, results)), indent=2, ensure_ascii=False) + "\n"
    if fmt == "terminal":
        buf = io.StringIO()
        render_report(console(width, buf), manifest, results, reference=teacher or "none")
        return buf.getvalue()

    raise ConfigError(f"--format: unknown format '{fmt}'; choose one of {', '.join(REPORT_FORMATS)}")


def write_output(path: str, text: str) -> None:
    """Write a rendered report to ``path``, or stdout for "-"; an unwritable path is a one-line error."""
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return

    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise ConfigError(f"--out: cannot write {path} ({exc.strerror}); choose another file") from None
    info(f"wrote {path} ({len(text.encode('utf-8')) / 1e6:.1f} MB)")


def render_release_fetch(con: Console, doc: Mapping[str, Any]) -> None:
    """Where ``release fetch`` put the release, and what it holds."""
    how = "already here, checked" if doc.get("already_here") else f"downloaded {doc.get('downloaded', 0) / 1e6:.1f} MB"
    if doc.get("resumed_at"):
        how += f", resumed at {doc['resumed_at'] / 1e6:.1f} MB"
    con.print(
        f"The paper's release (commit {str(doc.get('commit', ''))[:12]}, {how}): {doc.get('files')} files, "
        f"{doc.get('size', 0) / 1e6:.1f} MB; datasets {', '.join(doc.get('datasets', []))}",
        soft_wrap=True,
    )
    con.print(str(doc.get("path", "")), soft_wrap=True, highlight=False)
    for note in doc.get("notes", []):
        con.print(Text(f"note: {note}", style="dim"), soft_wrap=True)


def info(message: str) -> None:
    Console(stderr=True, highlight=False).print(Text(message, style="dim"), soft_wrap=True)


# --- models ---------------------------------------------------------------------------------


def render_models(con: Console, rows: Sequence[Mapping[str, Any]], pairs: Sequence[Mapping[str, Any]]) -> None:
    t = Table(title="models.toml", box=box.SIMPLE_HEAVY)
    for col in ("name", "role", "family", "present", "pulled", "locked", "size", "sha256", "license", "source"):
        t.add_column(col, overflow="fold")
    locked_cell = {"ok": "[green]ok[/green]", "mismatch": "[red]mismatch[/red]", "missing": "[red]missing[/red]"}
    for r in rows:
        present = "[green]yes[/green]" if r["present"] else "[red]no[/red]"
        size = f"{r['size'] / 1e6:.0f} MB" if r.get("size") else ""
        pulled = r.get("pulled") or {}
        t.add_row(
            r["name"],
            r["role"],
            r.get("family", ""),
            present,
            str(pulled.get("at", ""))[:10] if pulled else ("no" if r.get("repo") else ""),
            locked_cell.get(str(r.get("locked")), ""),
            size,
            (r.get("sha256") or "")[:12],
            r.get("license", ""),
            r.get("source", ""),
        )
    con.print(t)
    p = Table(title="pairs", box=box.SIMPLE_HEAVY)
    for col in ("pair", "base", "chat", "note"):
        p.add_column(col, overflow="fold")
    for r in pairs:
        p.add_row(r["name"], r["base"], r["chat"], r.get("note", ""))
    con.print(p)
    missing = [r for r in rows if (not r["present"] or r.get("locked") == "mismatch") and r.get("hint")]
    for r in missing:
        con.print(Text(f"{r['name']}: {r['hint']}", style="dim"))


# --- paper-release commands -------------------------------------------------------------------


def _stance_table(rows: Mapping[str, Mapping[str, Any]], title: str, *, with_ci: bool) -> Table:
    """Label shares and pluralism per labelled set (``metrics.stance`` JSON), one row a set."""
    t = Table(title=title, box=box.SIMPLE_HEAVY, show_edge=False, pad_edge=False)
    t.add_column("set", ratio=1, min_width=6)
    cols = ("labels", "yes", "no", "both", "other", "unparsed", "yes & no\nprompts", "any both\nprompts")
    for col in cols:
        t.add_column(col, justify="right", no_wrap=True)

    def cell(r: Mapping[str, Any], key: str) -> str:
        ci = _ci(r.get("ci", {}).get(key), 3) if with_ci else ""
        return f"{_f(r.get(key), 3)} {ci}".strip()

    for name, r in rows.items():
        t.add_row(
            short_label(str(r.get("label", name))),
            str(r.get("n_labelled", "")),
            _f(r.get("yes"), 3),
            _f(r.get("no"), 3),
            cell(r, "both"),
            _f(r.get("other"), 3),
            str(r.get("n_unparsed", 0)),
            cell(r, "prompts_with_yes_and_no"),
            cell(r, "prompts_with_both"),
        )
    return t


def render_stance(con: Console, table: Mapping[str, Mapping[str, Any]], title: str = "Stance (judge labels)") -> None:
    """The stance table with intervals, or without them when the terminal is too narrow."""
    t = _stance_table(table, title, with_ci=True)
    if Measurement.get(con, con.options.update_width(10_000), t).maximum > con.width:
        t = _stance_table(table, title, with_ci=False)
    con.print(t)
    _print_dropped(con, stance_dropped_lines(table))
    con.print(
        Text(
            "Shares of labelled responses; both = Overton pluralism; yes & no prompts = share of prompts whose "
            "samples hold a yes and a no (distributional pluralism); 95% bootstrap intervals over prompts.",
            style="dim",
        )
    )


def render_bench(con: Console, result: Mapping[str, Any]) -> None:
    t = Table(title=f"Sampling speed — {result.get('model', '')}", box=box.SIMPLE_HEAVY)
    for col in ("condition", "naive tok/s", "engine tok/s", "raw limit tok/s", "engine / naive", "engine / limit"):
        t.add_column(col, justify="right" if col != "condition" else "left")
    for cond, r in result.get("conditions", {}).items():
        t.add_row(
            cond,
            _f(r.get("naive_tokens_per_s"), 1),
            _f(r.get("engine_tokens_per_s"), 1),
            _f(r.get("limit_tokens_per_s"), 1),
            f"{_f(r.get('speedup_vs_naive'), 2)}×" if r.get("speedup_vs_naive") is not None else "–",
            f"{100 * r['share_of_limit']:.0f}%" if r.get("share_of_limit") is not None else "–",
        )
    con.print(t)
    st = result.get("settings", {})
    if st.get("n_threads"):
        by = f" ({st['chosen_by']})" if st.get("chosen_by") else ""
        con.print(
            Text(
                f"{st.get('n_threads')} thread(s) x {st.get('max_sequences')} live sequences{by}, "
                f"{st.get('n_gpu_layers', 0)} GPU layers; {st.get('n_prompts')} prompts x {st.get('n_samples')} "
                f"samples x {st.get('max_tokens')} tokens",
                style="dim",
            )
        )
    for line in result.get("notes", []):
        con.print(Text(line, style="dim"))


def render_sweep(con: Console, result: Mapping[str, Any]) -> None:
    """``lite-align bench --sweep``: one row per cell, engine tok/s per condition (naive and raw
    limit beside it), the auto choice and the fixed baseline marked."""
    st = result.get("settings", {})
    conds = list(st.get("conditions", []))
    auto = result.get("auto", {})
    base = result.get("baseline", {})
    gpu = len(st.get("gpu_layers", [0])) > 1
    t = Table(title=f"Sampling speed sweep — {result.get('model', '')}", box=box.SIMPLE_HEAVY)
    t.add_column("threads", justify="right")
    t.add_column("seqs", justify="right")
    if gpu:
        t.add_column("GPU layers", justify="right")
    for c in conds:
        t.add_column(f"{c}\nengine tok/s", justify="right")
        t.add_column("naive / limit", justify="right")
    t.add_column("", justify="left")
    for cell in result.get("cells", []):
        key = (cell.get("threads"), cell.get("sequences"))
        mark = []
        if key == (auto.get("threads"), auto.get("sequences")) and cell.get("gpu_layers") == auto.get("gpu_layers"):
            mark.append("◀ auto")
        if key == (base.get("threads"), base.get("sequences")):
            mark.append("(fixed before)")
        row = [str(cell.get("threads")), str(cell.get("sequences"))]
        if gpu:
            row.append(str(cell.get("gpu_layers")))
        for c in conds:
            r = cell.get("conditions", {}).get(c, {})
            row.append(_f(r.get("engine_tokens_per_s"), 1))
            row.append(f"{_f(r.get('naive_tokens_per_s'), 1)} / {_f(r.get('limit_tokens_per_s'), 1)}")
        row.append(" ".join(mark))
        t.add_row(*row, style="bold" if "◀ auto" in mark else None)
    con.print(t)
    chosen = result.get("chosen_by_gpu_layers", {}).get(str(auto.get("gpu_layers")), {})
    gains = ", ".join(f"{c} {v['vs_baseline']:.2f}×" for c, v in chosen.get("conditions", {}).items())
    con.print(
        Text(
            f"auto picks {auto.get('threads')} thread(s) x {auto.get('sequences')} sequences"
            + (f", {auto.get('gpu_layers')} GPU layers" if gpu else "")
            + f": against 1 thread x 16 sequences {gains} (the best worst case over the conditions). "
            f"{st.get('n_prompts')} prompts x {st.get('n_samples')} samples x {st.get('max_tokens')} tokens per "
            "condition; naive is measured once per thread count.",
            style="dim",
        )
    )


# --- plan, embedders, bundles -------------------------------------------------------------------


def _duration(seconds: Any) -> str:
    """Seconds as a person reads them.

    >>> _duration(42.0), _duration(125.0), _duration(7260.0)
    ('42 s', '2 min 5 s', '2 h 1 min')
    """
    if not isinstance(seconds, (int, float)) or math.isnan(seconds):
        return "–"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {(s % 3600) // 60} min"


def _count(x: Any) -> str:
    """A count in few characters.

    >>> _count(950), _count(12_345), _count(3_400_000)
    ('950', '12.3k', '3.4M')
    """
    if not isinstance(x, (int, float)):
        return "–"
    if x >= 1e6:
        return f"{x / 1e6:.1f}M"
    if x >= 1e4:
        return f"{x / 1e3:.1f}k"
    return f"{x:,.0f}"


def render_plan(con: Console, plan: Mapping[str, Any]) -> None:
    """The plan of a run (``plan.RunPlan.to_json()``): the work left per model and its time here."""
    done, pending = plan.get("done_samples", 0), plan.get("pending_samples", 0)
    head = f"{pending} samples to generate"
    if plan.get("resumed"):
        head += f" · resuming: {done} already in {escape(str(plan.get('run_dir', '')))}"
    elif plan.get("run_dir"):
        head += f" · into {escape(str(plan.get('run_dir')))}"
    t = Table(title="Plan", caption=head, box=box.SIMPLE_HEAVY)
    for col in ("model", "phases", "samples", "prompt tokens", "≤ new tokens", "tok/s here", "≤ time"):
        t.add_column(col, justify="left" if col in ("model", "phases") else "right", overflow="fold")
    for m in plan.get("models", []):
        cal = m.get("calibration")
        speed = "–"
        if cal:
            speed = f"read {_count(cal['prompt_tps'])}, write {_count(cal['decode_tps'])}"
            speed += " (cached)" if m.get("calibration_cached") else ""
        est = m.get("estimated_prompt_tokens") or 0
        tokens = _count(m.get("prompt_tokens", 0)) + (f" (~{_count(est)} est.)" if est else "")
        t.add_row(
            escape(str(m.get("name"))),
            ", ".join(m.get("phases") or []),
            f"{m.get('samples', 0):,}",
            tokens,
            _count(m.get("max_new_tokens", 0)),
            speed,
            _duration(m.get("seconds")),
        )
    con.print(t)
    total = plan.get("seconds")
    if pending == 0:
        con.print(Text("Nothing left to generate: the run will only analyse its samples.", style="bold"))
    elif total is not None:
        con.print(
            Text(
                f"Estimated time: at most about {_duration(total)} (every answer counted at its token budget; "
                "answers that stop early take less).",
                style="bold",
            )
        )
    for m in plan.get("models", []):
        work = ", ".join(f"{c} {n}" for c, n in (m.get("by_condition") or {}).items())
        con.print(Text(f"{m.get('name')}: {work}", style="dim"))
    for note in plan.get("notes", []):
        con.print(Text(note, style="dim"))


def render_embedders(con: Console, rows: Sequence[Mapping[str, Any]]) -> None:
    """``lite-align embedders list``."""
    t = Table(title="embedders (models.toml)", box=box.SIMPLE_HEAVY)
    for col in ("name", "present", "size", "sha256", "source"):
        t.add_column(col, overflow="fold")
    for r in rows:
        present = "[green]yes[/green]" if r.get("present") else "[red]no[/red]"
        sha = (r.get("sha256") or "")[:12]
        if r.get("sha256_ok") is False:
            sha += " [red](≠ models.toml)[/red]"
        size = f"{r['size'] / 1e6:.0f} MB" if r.get("size") else ""
        name = escape(str(r["name"])) + (" [dim](default)[/dim]" if r.get("default") else "")
        t.add_row(name, present, size, sha, escape(str(r.get("source", ""))))
    con.print(t)
    for r in rows:
        if r.get("problem"):
            con.print(Text(f"{r['name']}: {r['problem']}", style="dim"))


def render_export(con: Console, result: Mapping[str, Any]) -> None:
    """``lite-align embedders export``: what was written, the check, and the TOML entry."""
    con.print(
        Panel(
            f"[bold]{escape(str(result['name']))}[/bold] from {escape(str(result['source']))}\n"
            f"{escape(str(result['onnx_path']))} ({result['size'] / 1e6:.0f} MB, sha256 {result['sha256'][:12]})\n"
            f"{result['dim']}-d vectors, {result['pooling']} pooling, at most {result['max_length']} word pieces, "
            f"inputs {', '.join(result['inputs'])}, opset {result['opset']}\n"
            f"check: cosine with sentence-transformers ≥ {result['min_cosine']:.5f} · {result['seconds']:.1f} s",
            title="[bold]exported embedder[/bold]",
            expand=False,
        )
    )
    if result.get("registered"):
        con.print(Text(f"added to {result['registered']}:", style="bold"))
    else:
        con.print(Text("add this to models.toml (or rerun with --register):", style="bold"))
    con.print(Text(result["toml"].rstrip("\n")))


def render_bundle_check(con: Console, doc: Mapping[str, Any]) -> None:
    """``lite-align replay``: the bundle's checks, then whether every figure was reproduced."""
    lines = [
        f"[bold]bundle[/bold] {escape(str(doc.get('bundle', '')))} · {doc.get('files', 0)} files, "
        f"every sha256 checked · made {escape(str(doc.get('created', '')))} by lite_align "
        f"{escape(str(doc.get('lite_align_version', '')))}",
        f"[bold]unpacked[/bold] to {escape(str(doc.get('unpacked', '')))}",
    ]
    for item in doc.get("items", []):
        check = item.get("check", {})
        ok = check.get("mismatches") == []
        mark = "[green]reproduced[/green]" if ok else "[red]differs[/red]"
        lines.append(
            f"{escape(str(item['name']))}: {mark} — {check.get('compared', 0)} figures compared"
            + (f", {check.get('not_recomputed', 0)} not recomputed" if check.get("not_recomputed") else "")
        )
        for m in (check.get("mismatches") or [])[:5]:
            lines.append(
                f"  [red]{escape(str(m['figure']))}[/red]: bundled {m['bundled']!r}, recomputed {m['recomputed']!r}"
            )
        for note in item.get("notes", []):
            lines.append(f"  [dim]{escape(str(note))}[/dim]")
    con.print(Panel("\n".join(lines), title="[bold]replay[/bold]", expand=False))


def error(message: str) -> None:
    Console(stderr=True, highlight=False).print(f"[bold red]error:[/bold red] {message}", soft_wrap=True)


# --- explaining the drop ---------------------------------------------------------------------


def _est_cell(e: Any, digits: int = 3) -> str:
    """An estimate dict {"mean", "ci"} (or a bare number) as 'mean [lo, hi]'."""
    if isinstance(e, Mapping):
        return f"{_f(e.get('mean'), digits)} {_ci(e.get('ci'), digits)}".strip()
    return _f(e, digits)


def render_explain(con: Console, ex: Mapping[str, Any]) -> None:
    """Quality control, information aggregation and stance beside the raw diversity (docs/method.md §7)."""
    base, aligned = ex.get("base", "base"), ex.get("aligned", "aligned")
    con.rule(f"[bold]Explaining the drop[/bold] — {short_label(str(base))} → {short_label(str(aligned))}")
    if ex.get("judge_agreement"):  # how far the judge's figures below can be trusted, before them
        con.print(Text(str(ex["judge_agreement"]), style="yellow"))
    raw = ex.get("raw_diversity", {})
    t = Table(title="raw diversity", box=box.SIMPLE_HEAVY)
    for col in ("measure", "base", "aligned", "drop"):
        t.add_column(col, justify="left" if col == "measure" else "right", no_wrap=True)
    for key, label in (("jaccard", "word-bag Jaccard ↓"), ("embedding", "embedding diversity ↑")):
        if key in raw.get("base", {}):
            t.add_row(
                label, _est_cell(raw["base"][key]), _est_cell(raw["aligned"][key]), _f(raw.get("drop", {}).get(key))
            )
    con.print(t)

    cov = ex.get("coverage", {})
    c = Table(
        title="information aggregation: how much of what the other base answers say one answer covers",
        box=box.SIMPLE_HEAVY,
    )
    c.add_column("by", ratio=1, min_width=12)
    for col in ("one aligned answer", "one base answer"):
        c.add_column(col, justify="right", no_wrap=True)
    for key, label in (("wordbag", "word bags"), ("embedding", f"sentences (cos ≥ {cov.get('threshold', '')})")):
        r = cov.get(key)
        if r:
            cis = r.get("ci", {})
            c.add_row(
                label,
                f"{_f(r.get('aligned_single'))} {_ci(cis.get('aligned_single'))}",
                f"{_f(r.get('base_single'))} {_ci(cis.get('base_single'))}",
            )
    judge_cov = cov.get("judge")
    if judge_cov:
        c.add_row(
            "judge: how much of B is missing (1–5) ↓",
            _est_cell(judge_cov.get("aligned", {}).get("missing_from_a"), 2),
            _est_cell(judge_cov.get("base", {}).get("missing_from_a"), 2),
        )
    con.print(c)

    quality = ex.get("quality", {})
    filters = quality.get("filters", {})
    if filters:
        q = Table(title="quality control: judge-free filters (share of responses)", box=box.SIMPLE_HEAVY)
        q.add_column("filter", ratio=1, min_width=12)
        for role in filters:
            q.add_column(short_label(str(filters[role].get("label", role))), justify="right", no_wrap=True)
        names = list(next(iter(filters.values())).get("flagged", {}))
        for name in names:
            q.add_row(
                name,
                *[f"{_f(filters[r]['flagged'].get(name))} {_ci(filters[r].get('ci', {}).get(name))}" for r in filters],
            )
        q.add_row(
            "passed",
            *[f"{_f(filters[r].get('passed'))} {_ci(filters[r].get('ci', {}).get('passed'))}" for r in filters],
            end_section=True,
        )
        d = filters.get("base", {}).get("diversity", {})
        if d:
            q.add_row(
                "base Jaccard: raw → passing",
                f"{_f(d.get('jaccard_raw_kept'))} → {_f(d.get('jaccard_filtered'))}",
                *([""] * (len(filters) - 1)),
            )
            q.add_row(
                "base embedding div., raw → passing",
                f"{_f(d.get('embedding_raw_kept'))} → {_f(d.get('embedding_filtered'))}",
                *([""] * (len(filters) - 1)),
            )
        con.print(q)
    judged = quality.get("judge")
    if judged:
        j = Table(title="quality control: the judge's scores (1–5)", box=box.SIMPLE_HEAVY)
        j.add_column("aspect", no_wrap=True)
        for role in judged:
            j.add_column(short_label(str(judged[role].get("label", role))), justify="right", no_wrap=True)
        aspects = list(next(iter(judged.values())).get("scores", {}))
        for aspect in aspects:
            j.add_row(aspect, *[_est_cell(judged[r]["scores"].get(aspect), 2) for r in judged])
        j.add_row("judged unhelpful (≤ 2)", *[_est_cell(judged[r].get("unhelpful_share")) for r in judged])
        j.add_row("unparseable replies", *[str(judged[r].get("n_unparsed", 0)) for r in judged])
        con.print(j)
    stance = ex.get("stance")
    if stance:
        render_stance(con, stance, "stance: distributional vs Overton pluralism (judge labels)")
    judge = ex.get("judge")
    if judge:
        sanity = judge.get("sanity", {})
        verdict = "[green]passed[/green]" if sanity.get("passed") else "[red]failed[/red]"
        con.print(
            f"judge {judge.get('model', '')}: sanity check {verdict} (helpfulness of an empty answer "
            f"{_f(sanity.get('empty_answer_helpfulness'), 1)}, of the question copied back "
            f"{_f(sanity.get('question_copied_helpfulness'), 1)}, of real answers that pass the filters "
            f"{_f((sanity.get('filter_agreement') or {}).get('helpfulness_passed'), 1)}; expected: "
            f"{sanity.get('expected', '')}). "
            f"{judge.get('weak_judge_warning', '')}",
            soft_wrap=False,
        )
    if ex.get("explanation"):
        con.print(Text("In one sentence: " + ex["explanation"], style="bold"))
    dropped = explain_dropped_line(ex)
    if dropped:
        _print_dropped(con, [dropped])
    for note in ex.get("notes", []):
        con.print(Text(f"note: {note}", style="dim"))


# --- models pull --------------------------------------------------------------------------------


def render_pull(con: Console, doc: Mapping[str, Any]) -> None:
    """What `lite-align models pull` fetched: one line per file, then any registry entry to add."""
    for r in doc.get("pulled", []):
        how = {"resumed": f"resumed at {r.get('resumed_from', 0) / 1e6:.1f} MB and finished"}.get(
            r.get("status", ""), str(r.get("status", ""))
        )
        con.print(
            f"[bold]{escape(str(r['name']))}[/bold]: {how} {escape(str(r['file']))} from {escape(str(r['repo']))} "
            f"at {str(r.get('commit', ''))[:12]} ({r.get('size', 0) / 1e6:.1f} MB, sha256 "
            f"{str(r.get('sha256', ''))[:12]}…) → {escape(str(r['path']))}",
            soft_wrap=True,
        )
        if r.get("entry") and not r.get("registered"):
            con.print("registry entry to add (or pull again with --register):")
            con.print(Text(str(r["entry"]).rstrip("\n")))
        for note in r.get("notes", []):
            con.print(Text(f"note: {note}", style="dim"))
    for note in doc.get("notes", []):
        con.print(Text(f"note: {note}", style="dim"))
    if doc.get("pulled"):
        con.print(Text(f"recorded in {doc.get('lock')}", style="dim"))


# --- judge check ----------------------------------------------------------------------------------


def _agreement_table(title: str, tasks: Mapping[str, Mapping[str, Any]]) -> Table:
    t = Table(title=title, box=box.SIMPLE_HEAVY)
    t.add_column("task", no_wrap=True)
    for col in ("n", "accuracy", "Cohen's kappa", "reading"):
        t.add_column(col, justify="right" if col != "reading" else "left", no_wrap=True)
    for name, r in tasks.items():
        acc, kap = r.get("accuracy", {}), r.get("kappa", {})
        t.add_row(
            name,
            str(r.get("n", "")),
            f"{_f(acc.get('mean'), 2)} {_ci(acc.get('ci'), 2)}".strip(),
            f"{_f(kap.get('mean'), 2)} {_ci(kap.get('ci'), 2)}".strip(),
            str(r.get("reading", "")),
        )
    return t


def render_judge_check(con: Console, doc: Mapping[str, Any]) -> None:
    """`lite-align judge check`: agreement per task, what the judge gave each kind of item, and
    (--against-release) agreement with the paper's GPT-4 stance labels."""
    cal = doc.get("calibration") or {}
    judge = cal.get("judge") or {}
    info = cal.get("calibration") or {}
    con.rule(f"[bold]Judge check[/bold] — {escape(str(judge.get('model', '')))}")
    cached = " (cached)" if cal.get("cached") else ""
    con.print(
        Text(
            f"calibration set v{info.get('version')} ({info.get('n_items')} items, {info.get('source')}); judge sha256 "
            f"{str(judge.get('sha256', ''))[:12]}{cached}; intervals: 95% bootstrap",
            style="dim",
        )
    )
    tasks = cal.get("tasks") or {}
    con.print(_agreement_table("agreement with a careful reader", tasks))
    for name, r in tasks.items():
        unparsed = f"; {r['n_unparsed']} replies did not parse (counted wrong)" if r.get("n_unparsed") else ""
        con.print(Text(f"{name} labels: {r.get('labels', '')}{unparsed}", style="dim"))
    for name, r in tasks.items():
        kinds = r.get("by_kind") or {}
        score = {"quality": "mean helpfulness", "coverage": "mean missing_from_a"}.get(name)
        parts = []
        for kind, k in kinds.items():
            mean = f", {score} {_f(k.get('mean_score'), 1)}" if score else ""
            parts.append(f"{kind} {k.get('correct')}/{k.get('n')} right{mean}")
        if parts:
            con.print(Text(f"{name}: " + "; ".join(parts), style="dim"))
    rel = doc.get("release")
    if rel:
        r = rel.get("release", {})
        con.print(
            _agreement_table(
                f"stance against GPT-4's labels: {r.get('subset')}, {r.get('responses')} answers", rel.get("tasks", {})
            )
        )
        per_set = rel.get("per_set") or {}
        t = Table(title="shares of labels per released model: this judge / GPT-4", box=box.SIMPLE_HEAVY)
        t.add_column("", no_wrap=True)
        for name in per_set:
            t.add_column(short_label(name, 16), justify="right", no_wrap=True)
        rows = [("yes", "yes"), ("no", "no"), ("both", "both"), ("other", "other")]
        rows += [("prompts with yes & no", "prompts_with_yes_and_no"), ("prompts with any both", "prompts_with_both")]
        for label, key in rows:
            cells = []
            for s in per_set.values():
                sh = s.get("shares", {})
                cells.append(f"{_f(sh.get('judge', {}).get(key), 2)} / {_f(sh.get('gpt4', {}).get(key), 2)}")
            t.add_row(label, *cells)
        t.add_row("kappa with GPT-4", *[_f(s.get("kappa", {}).get("mean"), 2) for s in per_set.values()])
        con.print(t)
    for part in (cal, rel):
        if part and part.get("summary"):
            con.print(Text(str(part["summary"]), style="bold"))
