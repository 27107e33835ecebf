"""From sample sets to results: the typed ``Results`` every report format renders.

    sets (condition -> SampleSet) --> Results(diversity, recover, example, finding)
                                      to_json(): {"diversity", "recover", "example", "finding"}

The figures are those of the metric registry (``metrics.registry``): every registered family of
within-prompt measures the inputs allow, and every registered similarity for recoverability.

Nothing here generates text or imports rich, so the same function serves a fresh run, a run
directory read back from disk, and the paper's released outputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .conditions import GREEDY_SUFFIX, TEACHER, is_greedy, is_teacher
from .data import SampleSet
from .metrics.agreement import agreement_table
from .metrics.cross import cross_similarity
from .metrics.registry import Inputs, families
from .metrics.registry import metrics as registered_metrics
from .metrics.registry import similarities as registered_similarities
from .results import DiversityRow, RecoverRow, Results

# Verdict rule for a recovery ratio (cross / baseline), written in the README:
#   recovered  the interval's upper end reaches 1 on at least two of the three similarities
#   partly     the point ratio is at least 0.75 on at least two of the three similarities
#   not        otherwise
# (0.75, not 0.5: embedding similarities of any two on-topic answers are high, so on the paper's
# release the plain base model already reaches 0.46-0.49 there; 0.75 separates it from the
# in-context conditions, 0.87-0.92.)
RECOVERED_UPPER = 1.0
PARTLY_RATIO = 0.75


def max_samples(ss: SampleSet) -> int:
    return max((len(v) for v in ss.by_prompt.values()), default=0)


def diversity_rows(
    sets: Mapping[str, SampleSet],
    embedder: Any | None,
    *,
    require_pairs: bool = True,
    vocab_sizes: Mapping[str, int | None] | None = None,
) -> dict[str, DiversityRow]:
    """Within-prompt figures of every set, from every registered metric family the inputs allow
    (the encoder's only with ``embedder``), and the set's metric agreement table (``agreement``).
    In a run: only sets with at least two samples per prompt (greedy conditions have none to
    compare). ``vocab_sizes``: set name -> the generating model's vocabulary size (EAD), where known."""
    out: dict[str, DiversityRow] = {}
    for name, ss in sets.items():
        if require_pairs and max_samples(ss) < 2:
            continue
        inputs = Inputs(embedder=embedder, vocab_size=(vocab_sizes or {}).get(name))
        fams = [f for f in families() if f.available(inputs)]
        values = [f.compute(ss, inputs) for f in fams]
        ids = [pid for pid in ss.prompt_ids() if ss.by_prompt[pid]]
        tail_layout: list[str] = []
        extra: dict[str, Any] = {}
        for v in values[1:]:
            tail_layout += [*v.estimates, *v.extra]
            extra.update(v.extra)
        per_prompt = {k: p for v in values for k, p in v.per_prompt.items()}
        extra["agreement"] = agreement_json(per_prompt, ids)
        tail_layout.append("agreement")
        out[name] = DiversityRow.build(
            ss.label,
            values[0].estimates if values else {},
            {k: e for v in values[1:] for k, e in v.estimates.items()},
            n_prompts=len(ids),
            n_failed=ss.n_failed,
            n_responses=sum(len(ss.by_prompt[pid]) for pid in ids),
            n_duplicates=ss.n_duplicates,
            failed_reasons=ss.failed_reasons,
            extra=extra,
            tail_layout=tail_layout,
        )
    return out


def agreement_json(per_prompt: Mapping[str, Mapping[int, float]], prompt_ids: Sequence[int]) -> dict[str, Any]:
    """The metric agreement table of one sample set: Spearman's rho over its prompts between every
    pair of registered measures that have a direction, take part (``Metric.agreement``) and have
    per-prompt values, in report order; oriented so that + means "the two rank the prompts'
    diversity alike". ``keys`` (row and column order), ``rho`` (null where undefined: fewer than 3
    prompts with both values, or a constant measure), ``n`` (the prompts each rho rests on),
    ``oriented`` (true) and ``n_prompts``."""
    chosen = [m for m in registered_metrics() if m.direction and m.agreement and per_prompt.get(m.key)]
    series = {m.key: [per_prompt[m.key].get(pid, math.nan) for pid in prompt_ids] for m in chosen}
    table = agreement_table(series, {m.key: m.direction > 0 for m in chosen})
    return {**table.to_json(), "n_prompts": len(prompt_ids)}


def recorded_vocab_sizes(results: Mapping[str, Any] | None) -> dict[str, int]:
    """Set name -> the vocabulary size EAD used in recorded results (a run's results.json), where it
    was the generating model's (``ead_vocab_size_known``): what ``replay`` and ``compare`` reuse,
    since the model file need not be at hand."""
    rows = (results or {}).get("diversity")
    out: dict[str, int] = {}
    for name, row in (rows or {}).items() if isinstance(rows, Mapping) else ():
        size = row.get("ead_vocab_size") if isinstance(row, Mapping) else None
        if row.get("ead_vocab_size_known") is True and isinstance(size, int) and not isinstance(size, bool):
            out[str(name)] = size
    return out


def diversity_table(
    sets: Mapping[str, SampleSet],
    embedder: Any | None,
    *,
    require_pairs: bool = True,
    vocab_sizes: Mapping[str, int | None] | None = None,
) -> dict[str, dict[str, Any]]:
    """``diversity_rows`` as the --json documents hold them."""
    rows = diversity_rows(sets, embedder, require_pairs=require_pairs, vocab_sizes=vocab_sizes)
    return {name: row.to_json() for name, row in rows.items()}


def similarities(embedder: Any | None) -> list[Any]:
    """The registered similarities the inputs allow (the encoder's only with ``embedder``), built
    to share what they can (one encoder pass per text for the embedding cosine and BERTScore)."""
    shared: dict[str, Any] = {}
    return [s.make(embedder, shared) for s in registered_similarities() if embedder is not None or not s.needs_encoder]


def recover_rows(
    reference: SampleSet,
    candidates: Mapping[str, SampleSet],
    embedder: Any | None,
    *,
    greedy_reference: SampleSet | None = None,
    baseline: SampleSet | None = None,
) -> dict[str, RecoverRow]:
    """Cross-model similarity of every candidate against the reference's sample 0 (docs/method.md §6).

    A greedy candidate (one sample per prompt) is compared with ``greedy_reference`` when given,
    against the sampled baseline of ``reference``. Only prompts valid in every file compared count;
    each row says how many prompts failed in the candidate (``n_failed``, ``failed_reasons``), the
    reference (``reference_n_failed``) and a separate baseline (``baseline_n_failed``)."""
    sims = similarities(embedder)
    out: dict[str, RecoverRow] = {}
    for name, cand in candidates.items():
        greedy = max_samples(cand) < 2 and greedy_reference is not None
        ref = greedy_reference if greedy and greedy_reference is not None else reference
        base = (baseline or reference) if greedy else baseline
        figures = {sim.name: cross_similarity(ref, cand, sim, baseline=base).to_json() for sim in sims}
        extra: dict[str, Any] = {**cand.failures_json(), "reference_n_failed": ref.n_failed}
        if base is not None and base is not ref:
            extra["baseline_n_failed"] = base.n_failed
        out[name] = RecoverRow(figures, verdict(figures), extra, (*figures, "verdict", *extra))
    return out


def recover_table(
    reference: SampleSet,
    candidates: Mapping[str, SampleSet],
    embedder: Any | None,
    *,
    greedy_reference: SampleSet | None = None,
    baseline: SampleSet | None = None,
) -> dict[str, Any]:
    """``recover_rows`` as the --json documents hold them."""
    rows = recover_rows(reference, candidates, embedder, greedy_reference=greedy_reference, baseline=baseline)
    return {name: row.to_json() for name, row in rows.items()}


def verdict(row: Mapping[str, Any]) -> str:
    ratios = [v for k, v in row.items() if isinstance(v, Mapping) and "ratio" in v]
    reached = sum(1 for v in ratios if _num(v.get("ratio_ci", [None, None])[1]) >= RECOVERED_UPPER)
    partly = sum(1 for v in ratios if _num(v.get("ratio")) >= PARTLY_RATIO)
    need = 2 if len(ratios) >= 3 else 1
    if reached >= need:
        return "recovered"
    if partly >= need:
        return "partly"
    return "not"


def _num(x: Any) -> float:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return float("-inf")
    return f if not math.isnan(f) else float("-inf")


def example(sets: Mapping[str, SampleSet], prompts: Mapping[int, str], width: int = 400) -> dict[str, Any] | None:
    """One prompt's teacher answer beside each condition's first answer (truncated)."""
    if TEACHER not in sets:
        return None
    common = set(sets[TEACHER].by_prompt)
    for ss in sets.values():
        common &= set(ss.by_prompt)
    if not common:
        return None
    pid = min(common)
    answers = {name: _trunc(ss.by_prompt[pid][0], width) for name, ss in sets.items() if ss.by_prompt[pid]}
    return {"prompt_id": pid, "prompt": prompts.get(pid, ""), "answers": answers}


def _trunc(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def finding(diversity: Mapping[str, DiversityRow | Mapping[str, Any]], base: str = "base", chat: str = TEACHER) -> str:
    """One plain sentence: which of the two is more diverse, by the registered measures that name
    themselves for it (``Metric.finding``), in report order."""
    if base not in diversity or chat not in diversity:
        return ""
    b, c = _as_json(diversity[base]), _as_json(diversity[chat])
    more_base, more_chat = [], []
    for m in registered_metrics():
        key, label, sign = m.key, m.finding, m.direction
        if not label or not sign or key not in b or key not in c or b[key] is None or c[key] is None:
            continue
        if sign * (b[key] - c[key]) > 0:
            more_base.append(f"{label} {b[key]:.3f} vs {c[key]:.3f}")
        elif sign * (b[key] - c[key]) < 0:
            more_chat.append(f"{label} {c[key]:.3f} vs {b[key]:.3f}")
    parts = []
    if more_base:
        parts.append(f"the base model's samples are more diverse by {', '.join(more_base)}")
    if more_chat:
        parts.append(f"the chat model's samples are more diverse by {', '.join(more_chat)}")
    lengths = f"; chat answers average {c['length_mean']:.0f} words against {b['length_mean']:.0f} for base"
    return ("Across prompts, " + "; ".join(parts) + lengths + ".") if parts else ""


def _as_json(row: DiversityRow | Mapping[str, Any]) -> Mapping[str, Any]:
    return row.to_json() if isinstance(row, DiversityRow) else row


def analyse(
    sets: Mapping[str, SampleSet],
    *,
    embedder: Any | None = None,
    prompts: Mapping[int, str] | None = None,
    vocab_sizes: Mapping[str, int | None] | None = None,
) -> Results:
    """Everything the report shows for a run's conditions (names as in conditions.py);
    ``vocab_sizes``: condition -> its model's vocabulary size, where known (``vocab_sizes_of``)."""
    diversity = diversity_rows(sets, embedder, vocab_sizes=vocab_sizes)
    recover = None
    layout = ["diversity"]
    if TEACHER in sets:
        candidates = {n: ss for n, ss in sets.items() if not is_teacher(n)}
        if candidates:
            recover = recover_rows(
                sets[TEACHER],
                candidates,
                embedder,
                greedy_reference=sets.get(TEACHER + GREEDY_SUFFIX),
            )
            layout.append("recover")
    return Results(
        diversity=diversity,
        recover=recover,
        example=example({n: s for n, s in sets.items() if not is_greedy(n)}, prompts or {}),
        finding=finding(diversity),
        layout=(*layout, "example", "finding"),
    )
