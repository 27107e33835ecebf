"""From sample sets to results: the plain dict every report format renders.

    sets (condition -> SampleSet) --> {"diversity": {...}, "recover": {...}, "example": {...}, "finding": "..."}

Nothing here generates text or imports rich, so the same function serves a fresh run, a run
directory read back from disk, and the paper's released outputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .conditions import GREEDY_SUFFIX, TEACHER, is_greedy, is_teacher
from .data import SampleSet

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


def diversity_table(
    sets: Mapping[str, SampleSet], embedder: Any | None, *, require_pairs: bool = True
) -> dict[str, dict[str, Any]]:
    """Within-prompt metrics for every set (in a run: those with at least two samples per prompt;
    greedy conditions have none to compare)."""
    from .metrics.lexical import diversity

    out: dict[str, dict[str, Any]] = {}
    for name, ss in sets.items():
        if require_pairs and max_samples(ss) < 2:
            continue
        row = diversity(ss).to_json()
        row["failed_reasons"] = dict(ss.failed_reasons)
        if embedder is not None:
            from .metrics.embedding import embedding_diversity

            ed = embedding_diversity(ss, embedder)
            row["embedding_diversity"] = ed.mean
            row.setdefault("ci", {})["embedding_diversity"] = [ed.lo, ed.hi]
        out[name] = row
    return out


def similarities(embedder: Any | None) -> list[Any]:
    from .metrics.cross import JaccardSimilarity

    sims: list[Any] = [JaccardSimilarity()]
    if embedder is not None:
        from .metrics.embedding import BertScoreF1, EmbeddingCosine, EmbeddingPairs

        # one encoder pass per text for both; each pair scored once for as long as the embedder
        # lives (a teacher's baseline pairs recur in the sampled and the greedy tables)
        shared = getattr(embedder, "pair_scorer", None)
        if not isinstance(shared, EmbeddingPairs):
            shared = EmbeddingPairs(embedder)
            try:
                embedder.pair_scorer = shared
            except AttributeError:  # an embedder that takes no new attributes: a scorer per call
                pass
        sims += [EmbeddingCosine(embedder, scorer=shared), BertScoreF1(embedder, scorer=shared)]
    return sims


def recover_table(
    reference: SampleSet,
    candidates: Mapping[str, SampleSet],
    embedder: Any | None,
    *,
    greedy_reference: SampleSet | None = None,
    baseline: SampleSet | None = None,
) -> dict[str, Any]:
    """Cross-model similarity of every candidate against the reference's sample 0 (docs/method.md §6).

    A greedy candidate (one sample per prompt) is compared with ``greedy_reference`` when given,
    against the sampled baseline of ``reference``. Only prompts valid in every file compared count;
    each row says how many prompts failed in the candidate (``n_failed``, ``failed_reasons``), the
    reference (``reference_n_failed``) and a separate baseline (``baseline_n_failed``)."""
    from .metrics.cross import cross_similarity

    sims = similarities(embedder)
    out: dict[str, Any] = {}
    for name, cand in candidates.items():
        greedy = max_samples(cand) < 2 and greedy_reference is not None
        ref = greedy_reference if greedy and greedy_reference is not None else reference
        base = (baseline or reference) if greedy else baseline
        row: dict[str, Any] = {sim.name: cross_similarity(ref, cand, sim, baseline=base).to_json() for sim in sims}
        row["verdict"] = verdict(row)
        row.update(cand.failures_json(), reference_n_failed=ref.n_failed)
        if base is not None and base is not ref:
            row["baseline_n_failed"] = base.n_failed
        out[name] = row
    return out


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


def finding(diversity: Mapping[str, Mapping[str, Any]], base: str = "base", chat: str = TEACHER) -> str:
    """One plain sentence: which of the two is more diverse, by which measures."""
    if base not in diversity or chat not in diversity:
        return ""
    b, c = diversity[base], diversity[chat]
    more_base, more_chat = [], []
    # lower within-prompt Jaccard = more diverse; higher embedding diversity = more diverse;
    # higher distinct-prefix fraction = more diverse
    checks = [
        ("word-bag Jaccard", "jaccard_within", -1),
        ("embedding diversity", "embedding_diversity", 1),
        ("distinct prefixes", "distinct_prefix_fraction", 1),
    ]
    for label, key, sign in checks:
        if key not in b or key not in c or b[key] is None or c[key] is None:
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


def analyse(
    sets: Mapping[str, SampleSet], *, embedder: Any | None = None, prompts: Mapping[int, str] | None = None
) -> dict[str, Any]:
    """Everything the report shows for a run's conditions (names as in conditions.py)."""
    diversity = diversity_table(sets, embedder)
    results: dict[str, Any] = {"diversity": diversity}
    if TEACHER in sets:
        candidates = {n: ss for n, ss in sets.items() if not is_teacher(n)}
        if candidates:
            results["recover"] = recover_table(
                sets[TEACHER],
                candidates,
                embedder,
                greedy_reference=sets.get(TEACHER + GREEDY_SUFFIX),
            )
    results["example"] = example({n: s for n, s in sets.items() if not is_greedy(n)}, prompts or {})
    results["finding"] = finding(diversity)
    return results
