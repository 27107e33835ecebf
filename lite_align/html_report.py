"""The HTML report: one self-contained page that works offline.

    manifest, results, sample sets --> render_html --> one .html file (inline CSS, inline SVG, a little JS)

The page holds the manifest in brief, a chart of every diversity measure per condition with 95%
intervals, the recovery ratios with a line at 1 and the verdicts, any further parts (coverage,
quality, stance) as tables and charts, and a sample browser: per prompt, every condition's samples
side by side, with the words each shares with the teacher's sample 0 marked.

"Shares" means what the word-bag Jaccard counts: a token of the sample is marked when its form is
in the word bag of the teacher's sample 0 (``lite_align.text``: no punctuation, no stop words, case
kept). The marks are computed here, in Python, as character spans; the page's script only lays
them out. Samples travel as one inline JSON blob and are turned into elements for the prompt on
screen only (a paper-sized run holds tens of thousands of samples). Every text from the data is
escaped (HTML) or set as text (script): samples are untrusted model output.

No network: no external script, style, font or image; charts are SVG written here; a
Content-Security-Policy forbids any fetch.
"""

from __future__ import annotations

import html
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .conditions import GREEDY_SUFFIX, SAMPLED, TEACHER, is_greedy
from .data import SampleSet
from .markdown_report import (
    Figure,
    FigureTable,
    Note,
    agreement_tables,
    diversity_measures,
    diversity_table,
    dropped_lines,
    explain_blocks,
    explain_parts,
    manifest_lines,
    measure_digits,
    measure_label,
    measure_reading,
    recover_dropped_lines,
    recover_table,
    similarity_keys,
    similarity_label,
)
from .metrics.lexical import jaccard
from .results import DiversityRow, RecoverRow, Results
from .text import tokenize, word_bag

__all__ = ["ChartRow", "bar_chart", "browser_data", "render_html", "shared_spans"]

# Okabe–Ito colours (distinguishable with the common colour-vision deficiencies), darkest first
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#7F7F7F")
VERDICT_COLOURS = {"recovered": "#007a52", "partly": "#9a6700", "not": "#b42318"}


# --------------------------------------------------------------------------------------------------
# Charts


@dataclass(frozen=True)
class ChartRow:
    label: str
    value: float | None
    lo: float | None = None
    hi: float | None = None
    colour: str = PALETTE[0]
    faded: bool = False  # greedy twins: the same colour, lighter


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _nice_step(span: float, ticks: int = 5) -> float:
    """A 1/2/5 x 10^k step giving about ``ticks`` intervals over ``span``.

    >>> _nice_step(1.0), _nice_step(0.37), _nice_step(240)
    (0.2, 0.1, 50.0)
    """
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * power:
            return float(m * power)
    return float(10 * power)


def _fmt(x: float, digits: int) -> str:
    return f"{x:.{digits}f}"


def bar_chart(
    chart_id: str,
    title: str,
    rows: Sequence[ChartRow],
    *,
    digits: int = 3,
    reference: float | None = None,
    axis_label: str = "",
) -> str:
    """A horizontal bar chart with 95% interval whiskers, as an inline SVG string.

    One bar per row; a dashed line at ``reference`` (e.g. a ratio of 1). Accessible: a <title>
    and a <desc> listing every value, and a tooltip (<title>) on every bar.
    """
    label_w = min(max((len(r.label) for r in rows), default=4) * 8.4 + 14, 330)
    width, value_w, row_h, top, axis_h = 680, 74, 32, 14 if reference is None else 26, 40
    plot_w = width - label_w - value_w - 10
    height = top + row_h * len(rows) + axis_h
    numbers = [x for r in rows for x in (r.value, r.lo, r.hi) if x is not None]
    numbers += [reference] if reference is not None else []
    lo_dom, hi_dom = min([0.0, *numbers]), max([0.0, *numbers])
    if hi_dom - lo_dom <= 0:
        hi_dom = lo_dom + 1.0
    step = _nice_step(hi_dom - lo_dom)
    lo_dom, hi_dom = math.floor(lo_dom / step) * step, math.ceil(hi_dom / step) * step

    def x(v: float) -> float:
        return label_w + (v - lo_dom) / (hi_dom - lo_dom) * plot_w

    def row_text(r: ChartRow) -> str:
        if r.value is None:
            return f"{r.label}: no value"
        ci = (
            f" (95% interval {_fmt(r.lo, digits)} to {_fmt(r.hi, digits)})"
            if r.lo is not None and r.hi is not None
            else ""
        )
        return f"{r.label}: {_fmt(r.value, digits)}{ci}"

    desc = "; ".join(row_text(r) for r in rows)
    out = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-labelledby="{chart_id}-t {chart_id}-d" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-t">{_esc(title)}</title><desc id="{chart_id}-d">{_esc(desc)}</desc>',
    ]
    n_ticks = round((hi_dom - lo_dom) / step)
    tick_digits = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    axis_y = top + row_h * len(rows)
    for i in range(n_ticks + 1):
        t = lo_dom + i * step
        tx = x(t)
        out.append(f'<line class="grid" x1="{tx:.1f}" y1="{top - 4}" x2="{tx:.1f}" y2="{axis_y}"/>')
        out.append(f'<text class="tick" x="{tx:.1f}" y="{axis_y + 18}" text-anchor="middle">{t:.{tick_digits}f}</text>')
    if axis_label:
        out.append(
            f'<text class="tick" x="{label_w + plot_w / 2:.1f}" y="{axis_y + 36}" '
            f'text-anchor="middle">{_esc(axis_label)}</text>'
        )
    for i, r in enumerate(rows):
        y = top + i * row_h
        mid = y + row_h / 2
        label = r.label if len(r.label) <= 38 else r.label[:37] + "…"
        out.append(f"<g><title>{_esc(row_text(r))}</title>")
        out.append(f'<text class="label" x="{label_w - 8:.1f}" y="{mid + 5:.1f}" text-anchor="end">')
        out.append(f"{_esc(label)}</text>")
        if r.value is None:
            out.append(f'<text class="value" x="{x(0) + 6:.1f}" y="{mid + 5:.1f}">no value</text></g>')
            continue
        x0, x1 = sorted((x(0.0), x(r.value)))
        opacity = ' fill-opacity="0.45"' if r.faded else ""
        out.append(
            f'<rect x="{x0:.1f}" y="{y + 7}" width="{max(x1 - x0, 1):.1f}" height="{row_h - 14}" '
            f'fill="{r.colour}"{opacity} stroke="{r.colour}"/>'
        )
        end = x(r.value)
        if r.lo is not None and r.hi is not None:
            a, b = x(r.lo), x(r.hi)
            out.append(f'<line class="whisker" x1="{a:.1f}" y1="{mid}" x2="{b:.1f}" y2="{mid}"/>')
            for cap in (a, b):
                out.append(f'<line class="whisker" x1="{cap:.1f}" y1="{mid - 7}" x2="{cap:.1f}" y2="{mid + 7}"/>')
            end = max(end, b)
        out.append(f'<text class="value" x="{end + 6:.1f}" y="{mid + 5:.1f}">{_fmt(r.value, digits)}</text></g>')
    if reference is not None:
        rx = x(reference)
        out.append(f'<line class="ref" x1="{rx:.1f}" y1="{top - 8}" x2="{rx:.1f}" y2="{axis_y}"/>')
        out.append(f'<text class="tick" x="{rx:.1f}" y="{top - 12}" text-anchor="middle">{reference:g}</text>')
    out.append(f'<line class="axis" x1="{label_w}" y1="{axis_y}" x2="{label_w + plot_w}" y2="{axis_y}"/>')
    out.append("</svg>")
    return "".join(out)


def condition_colours(names: Sequence[str]) -> dict[str, tuple[str, bool]]:
    """A colour per condition (greedy twins share their sampled twin's, faded); the study's own
    conditions keep their colour across reports, other names take the next free one."""
    out: dict[str, tuple[str, bool]] = {}
    twins = [name.removesuffix(GREEDY_SUFFIX) for name in names]
    used = {PALETTE[SAMPLED.index(t)] for t in twins if t in SAMPLED}
    free = itertools.cycle([c for c in PALETTE if c not in used] or list(PALETTE))
    by_twin: dict[str, str] = {}
    for name in names:
        twin = name.removesuffix(GREEDY_SUFFIX)
        if twin not in by_twin:
            by_twin[twin] = PALETTE[SAMPLED.index(twin)] if twin in SAMPLED else next(free)
        out[name] = (by_twin[twin], is_greedy(name))
    return out


# --------------------------------------------------------------------------------------------------
# Sample browser data


_SKIPPABLE = " \t\r\n\f\v\"'`"


def shared_spans(text: str, bag: frozenset[str]) -> list[tuple[int, int]]:
    """Character spans of the tokens of ``text`` whose form is in ``bag``.

    Tokens are found in the text in order; a token NLTK rewrote (a straight double quote becomes
    ``\u0060\u0060`` or ``''``) is not in the text, is never in a word bag, and is passed over.

    >>> shared_spans('The cat sat; "the cat" ran.', frozenset({"cat", "ran"}))
    [(4, 7), (18, 21), (23, 26)]
    """
    spans: list[tuple[int, int]] = []
    pos = 0
    for token in tokenize(text):
        at = text.find(token, pos)
        if at < 0 or text[pos:at].strip(_SKIPPABLE):
            continue
        pos = at + len(token)
        if token in bag:
            spans.append((at, pos))
    return spans


def _flat(spans: Sequence[tuple[int, int]]) -> list[int]:
    """[gap, length, gap, length, ...], each gap from the end of the span before (compact JSON)."""
    out, end = [], 0
    for a, b in spans:
        out += [a - end, b - a]
        end = b
    return out


def browser_data(sets: Mapping[str, SampleSet], prompts: Mapping[int, str], teacher: str | None) -> dict[str, Any]:
    """The sample browser's blob: per condition and prompt, every sample's text, its Jaccard with
    the teacher's sample 0, and the spans of the words it shares with that sample."""
    ref = sets.get(teacher) if teacher else None
    samples: dict[str, dict[str, list[Any]]] = {}
    for name, ss in sets.items():
        per_prompt: dict[str, list[Any]] = {}
        for pid, texts in sorted(ss.by_prompt.items()):
            ref_texts = ref.by_prompt.get(pid) if ref is not None else None
            ref_bag = word_bag(ref_texts[0]) if ref_texts else None
            items: list[list[Any]] = []
            for text in texts:
                if ref_bag is None:
                    items.append([text, None, []])
                    continue
                j = jaccard(word_bag(text), ref_bag)
                items.append([text, None if math.isnan(j) else round(j, 3), _flat(shared_spans(text, ref_bag))])
            per_prompt[str(pid)] = items
        samples[name] = per_prompt
    ids = sorted({pid for ss in sets.values() for pid in ss.by_prompt} | set(prompts))
    return {
        "teacher": teacher if ref is not None else None,
        "conditions": list(sets),
        "prompts": [[pid, prompts.get(pid, "")] for pid in ids],
        "samples": samples,
    }


def _json_for_script(data: Any) -> str:
    """JSON safe inside <script type="application/json">: no "<", ">" or "&" left to end the block."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


# --------------------------------------------------------------------------------------------------
# Page parts


def _table_html(table: FigureTable, caption: str = "") -> str:
    head = "".join(f'<th scope="col">{_esc(c)}</th>' for c in (table.row_label, *table.columns))
    body = []
    for name, cells in table.rows:
        tds = []
        for cell in cells:
            if isinstance(cell, Figure):
                tds.append(f'<td class="num">{_figure_cell(cell)}</td>')
            elif cell in VERDICT_COLOURS:
                tds.append(f'<td><span class="verdict verdict-{_esc(cell)}">{_esc(cell)}</span></td>')
            else:
                tds.append(f"<td>{_esc(cell)}</td>")
        body.append(f'<tr><th scope="row">{_esc(name)}</th>{"".join(tds)}</tr>')
    cap = f"<caption>{_esc(caption)}</caption>" if caption else ""
    rows = "".join(body)
    return f'<div class="table-wrap"><table>{cap}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'


def _figure_cell(cell: Figure) -> str:
    """'0.425 <span class="ci">[0.367, 0.466]</span>': the interval set off in a quieter colour."""
    if cell.value is None or cell.ci is None:
        return _esc(cell.text())
    lo, hi = (f"{v:.{cell.digits}f}" for v in cell.ci)
    return f'{cell.value:.{cell.digits}f} <span class="ci">[{lo}, {hi}]</span>'


def _figure_html(svg: str, caption: str) -> str:
    return f'<figure class="chart-box">{svg}<figcaption>{_esc(caption)}</figcaption></figure>'


def _header_html(manifest: Mapping[str, Any], results: Results) -> str:
    items = "".join(f"<dt>{_esc(label)}</dt><dd>{_esc(text)}</dd>" for label, text in manifest_lines(manifest))
    finding = results.finding
    finding_html = f'<p class="finding"><strong>Finding.</strong> {_esc(finding)}</p>' if finding else ""
    return (
        '<section aria-labelledby="run-h"><h2 id="run-h">The run</h2>'
        f'<dl class="brief">{items}</dl>{finding_html}</section>'
    )


def _diversity_html(diversity: Mapping[str, DiversityRow], colours: Mapping[str, tuple[str, bool]]) -> str:
    figures = []
    for i, key in enumerate(diversity_measures(diversity)):
        label = measure_label(key)
        hint = measure_reading(key)
        digits = measure_digits(key)
        rows = []
        for name, typed in diversity.items():
            row = typed.to_json()
            ci = row.get("ci", {}).get(key) if isinstance(row.get("ci"), Mapping) else None
            value = row.get(key)
            lo, hi = (ci[0], ci[1]) if isinstance(ci, (list, tuple)) and len(ci) == 2 else (None, None)
            colour, faded = colours[name]
            rows.append(ChartRow(name, _num(value), _num(lo), _num(hi), colour, faded))
        svg = bar_chart(f"div-{i}", f"{label} per condition, with 95% intervals", rows, digits=digits)
        figures.append(_figure_html(svg, f"{label}{f' ({hint})' if hint else ''}; whiskers: 95% bootstrap interval."))
    table = diversity_table(diversity)
    return (
        '<section aria-labelledby="div-h"><h2 id="div-h">Diversity</h2>'
        f"<p>{_esc(table.note)}</p>{_dropped_html(dropped_lines(diversity))}"
        f'<div class="charts">{"".join(figures)}</div>'
        f"<details><summary>Every figure as a table</summary>{_table_html(table)}</details></section>"
    )


def _agreement_html(diversity: Mapping[str, DiversityRow]) -> str:
    tables = agreement_tables(diversity)
    if not tables:
        return ""
    body = "".join(f"<h3>{_esc(t.title)}</h3><p>{_esc(t.note)}</p>{_table_html(t)}" for t in tables)
    return f'<section aria-labelledby="agr-h"><h2 id="agr-h">Metric agreement</h2>{body}</section>'


def _recover_html(recover: Mapping[str, RecoverRow], reference: str, colours: Mapping[str, tuple[str, bool]]) -> str:
    figures = []
    for key in similarity_keys(recover):
        rows = []
        for name, typed in recover.items():
            row = typed.to_json()
            found = row.get(key)
            r: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
            ci = r.get("ratio_ci") or [None, None]
            colour, faded = colours[name]
            verdict = row.get("verdict", "")
            rows.append(
                ChartRow(
                    f"{name} ({verdict})" if verdict else name,
                    _num(r.get("ratio")),
                    _num(ci[0]),
                    _num(ci[1]),
                    colour,
                    faded,
                )
            )
        label = similarity_label(key)
        svg = bar_chart(
            f"rec-{key}",
            f"Recovery ratio by {label}, with 95% intervals; 1 = as close as the teacher to itself",
            rows,
            digits=2,
            reference=1.0,
            axis_label="cross / baseline",
        )
        figures.append(_figure_html(svg, f"Recovery ratio, {label}: dashed line at 1; verdict in brackets."))
    table = recover_table(recover, reference)
    return (
        f'<section aria-labelledby="rec-h"><h2 id="rec-h">{_esc(table.title)}</h2><p>{_esc(table.note)}</p>'
        f"{_dropped_html(recover_dropped_lines(recover))}"
        f'<div class="charts">{"".join(figures)}</div>{_table_html(table)}</section>'
    )


def _dropped_html(lines: Sequence[str]) -> str:
    """Failed prompts, one line a set (nothing when none failed)."""
    return "".join(f'<p class="dropped">{_esc(line)}</p>' for line in lines)


def _explain_html(parts: Mapping[str, Any]) -> str:
    out = ['<section aria-labelledby="exp-h"><h2 id="exp-h">Explaining the drop</h2>']
    n_chart = 0
    for name, obj in parts.items():
        out.append(f"<h3>{_esc(name)}</h3>")
        for block in explain_blocks(name, obj):
            if isinstance(block, Note) and block.label == name:
                out.append(f"<p>{_esc(block.text)}</p>")
                continue
            if isinstance(block, Note):
                out.append(f'<p><span class="note-label">{_esc(block.label)}:</span> {_esc(block.text)}</p>')
                continue
            rows = _chart_rows(block)
            if rows:
                n_chart += 1
                digits = max((c.digits for _, cells in block.rows for c in cells if isinstance(c, Figure)), default=3)
                svg = bar_chart(f"exp-{n_chart}", f"{block.title}, with 95% intervals where known", rows, digits=digits)
                out.append(_figure_html(svg, f"{block.title}; whiskers: 95% interval where the results hold one."))
            out.append(_table_html(block, caption=block.title))
    out.append("</section>")
    return "".join(out)


def _chart_rows(table: FigureTable) -> list[ChartRow]:
    """One bar per number that is not a count (keys n_* and *_count are tabled, not charted)."""
    rows = []
    for c, column in enumerate(table.columns):
        if column.startswith("n_") or column.endswith("_count"):
            continue
        for name, cells in table.rows:
            cell = cells[c]
            if not isinstance(cell, Figure) or name.startswith("n_") or cell.digits == 0:
                continue
            label = name if len(table.columns) == 1 else f"{name} · {column}"
            lo, hi = cell.ci if cell.ci is not None else (None, None)
            rows.append(ChartRow(label, cell.value, lo, hi, PALETTE[c % len(PALETTE)]))
    return rows


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def _browser_html(data: Mapping[str, Any], colours: Mapping[str, tuple[str, bool]]) -> str:
    toggles = "".join(
        f'<label class="toggle"><input type="checkbox" data-cond="{_esc(c)}" checked> '
        f'<span class="swatch" style="background:{colours[c][0]}"></span>{_esc(c)}</label>'
        for c in data["conditions"]
    )
    teacher = data.get("teacher")
    legend = (
        f"Marked words also occur in the teacher's ({_esc(teacher)}) sample 0 for this prompt, counted as the word-bag "
        "Jaccard counts them: no punctuation, no stop words, case kept. Each sample shows its Jaccard with that "
        "sample."
        if teacher
        else "No teacher set: samples are shown without marks."
    )
    return (
        '<section aria-labelledby="smp-h" id="samples"><h2 id="smp-h">Samples, side by side</h2>'
        f'<p class="legend">{legend}</p>'
        '<div class="controls"><label for="prompt-select">Prompt</label> '
        '<button type="button" id="prev-prompt" aria-label="previous prompt">◀</button>'
        '<select id="prompt-select"></select>'
        '<button type="button" id="next-prompt" aria-label="next prompt">▶</button></div>'
        f'<fieldset class="toggles"><legend>Conditions shown</legend>{toggles}</fieldset>'
        '<p id="prompt-text" class="prompt-text" aria-live="polite"></p>'
        '<div id="browser" class="browser"></div>'
        "<noscript><p>The sample browser needs JavaScript; every figure above works without it.</p></noscript>"
        f'<script type="application/json" id="sample-data">{_json_for_script(data)}</script></section>'
    )


_CSS = """
:root { --ink: #111; --muted: #444; --line: #c8c8c8; --panel: #f5f5f2; --mark: #ffe27a; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; font-size: 18px; line-height: 1.5;
  color: var(--ink); background: #fff; margin: 0 auto; padding: 1.5rem 2rem 4rem; max-width: 1500px; }
h1 { font-size: 2rem; margin: 0 0 .25rem; } h2 { font-size: 1.55rem; margin-top: 2.5rem;
  border-bottom: 2px solid var(--ink); padding-bottom: .2rem; } h3 { font-size: 1.2rem; margin-top: 1.6rem; }
nav a { margin-right: 1.2rem; color: #0b4f8a; }
.brief { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0; }
.brief dt { font-weight: bold; } .brief dd { margin: 0; }
.finding { background: var(--panel); border-left: 6px solid #0072B2; padding: .7rem 1rem; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 1rem 2rem; }
.chart-box { margin: 0; } .chart { width: 100%; max-width: 800px; height: auto; display: block; }
.chart text { font-family: inherit; fill: var(--ink); } .chart .label { font-size: 16px; }
.chart .value { font-size: 15px; font-weight: bold; } .chart .tick { font-size: 14px; fill: var(--muted); }
.chart .grid { stroke: #e3e3e3; } .chart .axis { stroke: #555; }
.chart .whisker { stroke: #111; stroke-width: 2; }
.chart .ref { stroke: #b42318; stroke-width: 2; stroke-dasharray: 6 4; }
figcaption { color: var(--muted); font-size: .9rem; }
.table-wrap { overflow-x: auto; } table { border-collapse: collapse; margin: .8rem 0; font-size: .95rem; }
caption { text-align: left; font-weight: bold; padding: .3rem 0; }
th, td { border-bottom: 1px solid var(--line); padding: .35rem .7rem; text-align: left; vertical-align: top; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; } .ci { color: var(--muted); }
.verdict { font-weight: bold; padding: .1rem .5rem; border-radius: .3rem; color: #fff; }
.verdict-recovered { background: #007a52; } .verdict-partly { background: #9a6700; }
.verdict-not { background: #b42318; }
.note-label { font-weight: bold; }
.dropped { color: #8a5a00; }
.controls { display: flex; gap: .5rem; align-items: center; flex-wrap: wrap; margin: .8rem 0; }
.controls select { font-size: 1rem; max-width: min(60rem, 80vw); padding: .3rem; }
.controls button { font-size: 1rem; padding: .3rem .8rem; }
.toggles { border: 1px solid var(--line); display: flex; flex-wrap: wrap; gap: .3rem 1.2rem; }
.toggle { white-space: nowrap; } .swatch { display: inline-block; width: .9rem; height: .9rem; margin-right: .3rem;
  vertical-align: -.1rem; border: 1px solid #0003; }
.prompt-text { font-size: 1.25rem; font-weight: bold; }
.browser { display: grid; grid-auto-flow: column; grid-auto-columns: minmax(22rem, 1fr); gap: 1rem;
  overflow-x: auto; padding-bottom: 1rem; }
.column h3 { margin: 0 0 .5rem; font-size: 1.1rem; border-top: 6px solid var(--cond); padding-top: .3rem; }
.sample { background: var(--panel); border-radius: .4rem; padding: .6rem .8rem; margin-bottom: .8rem; }
.sample-head { font-size: .9rem; color: var(--muted); margin-bottom: .3rem; }
.sample-text { white-space: pre-wrap; overflow-wrap: anywhere; margin: 0; }
mark { background: var(--mark); color: inherit; border-bottom: 2px solid #a16207; padding: 0 .05rem; }
.hidden { display: none; } .empty { color: var(--muted); font-style: italic; }
footer { margin-top: 3rem; color: var(--muted); font-size: .85rem; }
@media print { .controls, .toggles { display: none; } .browser { grid-auto-flow: row; } }
"""

_JS = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("sample-data").textContent);
  var select = document.getElementById("prompt-select");
  var browser = document.getElementById("browser");
  var promptText = document.getElementById("prompt-text");
  var hidden = {}, colours = {};

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }
  function markedText(text, flat) {
    var p = el("p", "sample-text"), pos = 0;
    for (var i = 0; i + 1 < flat.length; i += 2) {
      var start = pos + flat[i], end = start + flat[i + 1];
      if (start > pos) { p.appendChild(document.createTextNode(text.slice(pos, start))); }
      p.appendChild(el("mark", "", text.slice(start, end)));
      pos = end;
    }
    if (pos < text.length) { p.appendChild(document.createTextNode(text.slice(pos))); }
    return p;
  }
  function render() {
    var pid = select.value, entry = data.prompts[select.selectedIndex];
    promptText.textContent = entry ? "Prompt " + entry[0] + ": " + (entry[1] || "(text not recorded)") : "";
    browser.textContent = "";
    data.conditions.forEach(function (cond) {
      var col = el("div", "column" + (hidden[cond] ? " hidden" : ""));
      col.setAttribute("data-cond", cond);
      col.style.setProperty("--cond", colours[cond] || "#777");
      col.appendChild(el("h3", "", cond));
      var samples = (data.samples[cond] || {})[pid] || [];
      if (!samples.length) { col.appendChild(el("p", "empty", "no sample for this prompt")); }
      samples.forEach(function (s, i) {
        var box = el("article", "sample");
        var head = "sample " + i;
        if (cond === data.teacher && i === 0) { head += " \\u00b7 the reference (teacher's sample 0)"; }
        else if (s[1] !== null) { head += " \\u00b7 Jaccard with teacher's sample 0: " + s[1].toFixed(3); }
        box.appendChild(el("div", "sample-head", head));
        box.appendChild(markedText(s[0], s[2]));
        col.appendChild(box);
      });
      browser.appendChild(col);
    });
    try { history.replaceState(null, "", "#prompt-" + pid); } catch (e) { /* some file:// setups refuse */ }
  }
  document.querySelectorAll(".toggle input").forEach(function (box) {
    var cond = box.getAttribute("data-cond");
    colours[cond] = box.parentNode.querySelector(".swatch").style.background;
    box.addEventListener("change", function () {
      hidden[cond] = !box.checked;
      document.querySelectorAll(".column").forEach(function (col) {
        if (col.getAttribute("data-cond") === cond) { col.classList.toggle("hidden", hidden[cond]); }
      });
    });
  });
  data.prompts.forEach(function (entry) {
    var text = entry[1] || "(text not recorded)";
    var opt = el("option", "", entry[0] + ": " + (text.length > 90 ? text.slice(0, 89) + "\\u2026" : text));
    opt.value = String(entry[0]);
    select.appendChild(opt);
  });
  function step(delta) {
    var i = select.selectedIndex + delta;
    if (i >= 0 && i < select.options.length) { select.selectedIndex = i; render(); }
  }
  select.addEventListener("change", render);
  document.getElementById("prev-prompt").addEventListener("click", function () { step(-1); });
  document.getElementById("next-prompt").addEventListener("click", function () { step(1); });
  var wanted = /^#prompt-(\\d+)$/.exec(location.hash);
  if (wanted) { select.value = wanted[1]; }
  if (select.selectedIndex < 0) { select.selectedIndex = 0; }
  render();
})();
"""

_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def render_html(
    manifest: Mapping[str, Any],
    results: Results | Mapping[str, Any],
    sets: Mapping[str, SampleSet] | None = None,
    prompts: Mapping[int, str] | None = None,
    *,
    teacher: str | None = TEACHER,
    title: str = "lite_align report",
) -> str:
    """The whole page as one string (see the module doc). Without ``sets`` the sample browser is
    left out."""
    results = Results.from_json(results)
    names = list(sets or {}) + list(results.diversity) + list(results.recover or {})
    colours = condition_colours(list(dict.fromkeys(names)))
    sections = [_header_html(manifest, results)]
    nav = [("#run-h", "The run")]
    if results.diversity:
        sections.append(_diversity_html(results.diversity, colours))
        nav.append(("#div-h", "Diversity"))
        agreement = _agreement_html(results.diversity)
        if agreement:
            sections.append(agreement)
            nav.append(("#agr-h", "Metric agreement"))
    if results.recover:
        sections.append(_recover_html(results.recover, teacher or "the reference", colours))
        nav.append(("#rec-h", "Recoverability"))
    parts = explain_parts(results)
    if parts:
        sections.append(_explain_html(parts))
        nav.append(("#exp-h", "Explaining the drop"))
    script = ""
    if sets:
        sections.append(_browser_html(browser_data(sets, prompts or {}, teacher), colours))
        nav.append(("#smp-h", "Samples"))
        script = f"<script>{_JS}</script>"
    version = manifest.get("lite_align_version")
    nav_html = "".join(f'<a href="{href}">{_esc(text)}</a>' for href, text in nav)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_esc(title)}</h1><p>Base vs aligned models: diversity and recoverability "
        f'(after Lake, Choi &amp; Durrett, NAACL 2025).</p><nav aria-label="sections">{nav_html}</nav></header>'
        f"<main>{''.join(sections)}</main>"
        f"<footer>Written by lite_align{' ' + _esc(version) if version else ''}; one file, no network needed."
        "</footer>"
        f"{script}</body></html>\n"
    )
