"""Explain the diversity drop from a base to an aligned sample set (docs/method.md §7), in one call:

    explain(base, aligned, embedder=embedder, judge=judge, prompts=prompts) -> plain dict (JSON-ready)

Keys of the result:

- ``raw_diversity``: within-prompt word-bag Jaccard (higher = less diverse) and embedding diversity
  (mean pairwise cosine distance, higher = more diverse) of both sets, and the drop in each;
- ``coverage``: single-answer coverage by word bags and sentence embeddings
  (``lite_align.metrics.coverage``), plus the judge's comparison when a judge is given;
- ``quality``: the judge-free filters of both sets (``lite_align.metrics.quality``), always; the
  judge's scores when a judge is given;
- ``stance``: the judge's stance labels per set, when a judge is given and the prompts are yes/no
  questions (``yesno=True``, or detected: ``looks_yesno``);
- ``judge``: the judge's model, its counters, and a sanity check of how weak it is (when the judge
  fails it, the explanation's quality part uses the judge-free filters instead, and says so in
  ``notes``);
- ``explanation``: one sentence, computed from the figures (see ``explanation``);
- ``notes``: what was left out and why.

Both sets are first cut to the prompts they share (a prompt that failed in either is left out;
``n_failed`` and ``failed_reasons`` give each set's failed prompts). Prompt texts come from ``prompts``, else from
the sets themselves; without them the off-topic filter and every judge task are skipped (noted).

With a judge: each response of both sets is scored (quality) and, on yes/no sets, labelled
(stance). Coverage by the judge compares, per prompt, one answer A with text B = the base answers
2..n joined (each marked "Reply k:"): A is the aligned set's first answer, then the base set's
first answer, so both face the same B, which neither helped write (the leave-one-out idea of the
judge-free measures). ``judge_prompts`` caps how many prompts the judge sees (the first ones by
id), since a small CPU judge manages a few judgements a second.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from lite_align.data import SampleSet
from lite_align.judge import ASPECTS, Judge, Verdict
from lite_align.metrics.coverage import DEFAULT_THRESHOLD, coverage
from lite_align.metrics.embedding import embedding_diversity
from lite_align.metrics.lexical import diversity
from lite_align.metrics.quality import OFF_TOPIC_COSINE, diversity_after_filter, filter_quality, flag_responses
from lite_align.metrics.stance import stance_summary
from lite_align.stats import Estimate, mean_ci, ratio_ci

# Parts of the result (key paths; "*" = any key) as a replay needs to know them: those computed
# from the sentence encoder, those only the judge gives, and those drawn from both.
ENCODER_PARTS: tuple[tuple[str, ...], ...] = (
    ("raw_diversity", "*", "embedding"),
    ("coverage", "embedding"),
    ("quality", "filters"),  # the off-topic filter compares embeddings; what passes follows from it
)
JUDGE_PARTS: tuple[tuple[str, ...], ...] = (("judge",), ("stance",), ("quality", "judge"), ("coverage", "judge"))
DERIVED_PARTS: tuple[tuple[str, ...], ...] = (("explanation",), ("notes",))


def part_is(keys: Sequence[str], parts: Sequence[tuple[str, ...]]) -> bool:
    """Whether the key path ``keys`` (inside the explain result) is one of ``parts``.

    >>> part_is(("raw_diversity", "base", "embedding"), ENCODER_PARTS), part_is(("coverage",), ENCODER_PARTS)
    (True, False)
    """
    return any(len(keys) == len(p) and all(x in ("*", k) for x, k in zip(p, keys, strict=True)) for p in parts)


__all__ = ["HELPFUL_BAR", "explain", "explanation", "looks_yesno"]

HELPFUL_BAR = 3  # a response passes the judge's quality bar with helpfulness >= 3 (<= 2: unhelpful)
SANITY_PROMPTS = 3
_AUXILIARIES = frozenset(
    "is are was were am do does did can could should would will shall may might must has have had".split()
)


def looks_yesno(questions: Sequence[str]) -> bool:
    """True when most questions end with "?" and start with an auxiliary verb ("Is", "Can", ...).

    >>> looks_yesno(["Are bees vital?", "Can plants hear?", "Why is the sky blue?"])
    True
    >>> looks_yesno(["Write a poem.", "Is it safe?"])
    False
    """

    def yesno(q: str) -> bool:
        words = q.strip().split()
        return bool(words) and q.rstrip().endswith("?") and words[0].lower() in _AUXILIARIES

    return bool(questions) and sum(map(yesno, questions)) > len(questions) / 2


def _number(x: float | None) -> float | None:
    return None if x is None or np.isnan(x) else float(x)


def _est(e: Estimate | None) -> dict[str, Any] | None:
    return None if e is None else {"mean": _number(e.mean), "ci": [_number(e.lo), _number(e.hi)], "n": e.n}


def _shared(base: SampleSet, aligned: SampleSet) -> tuple[SampleSet, SampleSet]:
    ids = sorted(set(base.by_prompt) & set(aligned.by_prompt))

    def cut(s: SampleSet) -> SampleSet:
        return replace(s, by_prompt={pid: s.by_prompt[pid] for pid in ids})

    return cut(base), cut(aligned)


def explain(
    base: SampleSet,
    aligned: SampleSet,
    *,
    embedder: Any | None,
    judge: Judge | None = None,
    prompts: Mapping[int, str] | None = None,
    yesno: bool | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    off_topic_cosine: float = OFF_TOPIC_COSINE,
    judge_prompts: int | None = None,
) -> dict[str, Any]:
    """The whole section as a plain dict (see the module docstring). ``embedder`` is an
    ``lite_align.embed.Embedder`` (None skips every embedding figure)."""
    base, aligned = _shared(base, aligned)
    texts: dict[int, str] = {**aligned.prompts, **base.prompts, **(prompts or {})}
    ids = base.prompt_ids()
    questions = {pid: texts[pid] for pid in ids if pid in texts}
    notes: list[str] = []
    if len(questions) < len(ids):
        notes.append(
            f"{len(ids) - len(questions)} of {len(ids)} prompts have no text: "
            "the off-topic filter and the judge skip them"
        )
    if embedder is None:
        notes.append("no embedder: embedding diversity, sentence coverage and the off-topic filter are left out")

    raw = _raw_diversity(base, aligned, embedder)
    filters = {
        role: filter_quality(s, embedder=embedder, prompts=questions, off_topic_cosine=off_topic_cosine)
        for role, s in (("base", base), ("aligned", aligned))
    }
    cov = coverage(base, aligned, embedder=embedder, threshold=threshold).to_json()
    out: dict[str, Any] = {
        "base": base.label,
        "aligned": aligned.label,
        "n_prompts": len(ids),
        "n_failed": {"base": base.n_failed, "aligned": aligned.n_failed},
        "failed_reasons": {"base": dict(base.failed_reasons), "aligned": dict(aligned.failed_reasons)},
        "raw_diversity": raw,
        "coverage": cov,
        "quality": {"filters": {role: r.to_json() for role, r in filters.items()}, "judge": None},
    }
    quality_bar = "the judge-free filters"
    passing: Mapping[str, Any] = filters["base"].diversity.to_json()
    judge_passing: Mapping[str, Any] | None = None
    if judge is not None and questions:
        judged_ids = sorted(questions)[: judge_prompts if judge_prompts is not None else None]
        if len(judged_ids) < len(questions):
            notes.append(f"the judge saw the first {len(judged_ids)} of {len(questions)} prompts (judge_prompts)")
        j_base = _restrict(base, judged_ids)
        j_aligned = _restrict(aligned, judged_ids)
        judged, base_verdicts = _judge_quality(judge, {"base": j_base, "aligned": j_aligned}, questions, embedder)
        out["quality"]["judge"] = judged
        judge_passing = judged["base"]["diversity_passing"]
        cov["judge"] = _judge_coverage(judge, j_base, j_aligned, questions)
        is_yesno = yesno if yesno is not None else looks_yesno([questions[pid] for pid in judged_ids])
        if is_yesno:
            out["stance"] = {
                role: _judge_stance(judge, s, questions) for role, s in (("base", j_base), ("aligned", j_aligned))
            }
        else:
            notes.append("stance left out: the prompts are not yes/no questions (pass yesno=True to force it)")
        sanity = _sanity(judge, j_base, questions, base_verdicts, embedder, off_topic_cosine)
        if judge_passing is not None and sanity["passed"]:
            passing, quality_bar = judge_passing, f"the judge's quality bar (helpfulness >= {HELPFUL_BAR})"
        else:
            notes.append(
                "the judge failed its sanity check (see judge.sanity): the explanation uses the judge-free filters"
            )
        out["judge"] = {
            **judge.describe(),
            "sanity": sanity,
            "stats": judge.stats.to_json(),
            "weak_judge_warning": (
                "a small local judge is a weak proxy for the paper's GPT-4 judge; read its scores beside the sanity "
                "check and the judge-free filters"
            ),
        }
    elif judge is not None:
        notes.append("no prompt texts: the judge was not run")
    out["explanation"] = explanation(raw, passing, cov, quality_bar=quality_bar)
    out["notes"] = notes
    return out


def _restrict(s: SampleSet, ids: Sequence[int]) -> SampleSet:
    return SampleSet(s.label, {pid: s.by_prompt[pid] for pid in ids if pid in s.by_prompt}, prompts=s.prompts)


def _raw_diversity(base: SampleSet, aligned: SampleSet, embedder: Any | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for role, s in (("base", base), ("aligned", aligned)):
        emb = embedding_diversity(s, embedder) if embedder is not None else None
        out[role] = {"label": s.label, "jaccard": _est(diversity(s).jaccard_within), "embedding": _est(emb)}
    jb, ja = out["base"]["jaccard"]["mean"], out["aligned"]["jaccard"]["mean"]
    eb = out["base"]["embedding"]["mean"] if out["base"]["embedding"] else None
    ea = out["aligned"]["embedding"]["mean"] if out["aligned"]["embedding"] else None
    out["drop"] = {
        "jaccard": None if jb is None or ja is None else ja - jb,  # Jaccard rises as diversity drops
        "embedding": None if eb is None or ea is None else eb - ea,
    }
    return out


def _percent(x: float) -> str:
    return f"{100 * x:.0f}%"


def explanation(raw: Mapping[str, Any], passing: Mapping[str, Any], cov: Mapping[str, Any], *, quality_bar: str) -> str:
    """One sentence from the figures. With J the within-prompt word-bag Jaccard (it rises as
    diversity falls) and E the embedding diversity:

    - drop_J = J_aligned - J_base (all shared prompts); drop_E = E_base - E_aligned;
    - quality part (J) = (J_base,passing - J_base,kept) / drop_J, where J_base,passing is the base
      set's Jaccard on the responses that pass the quality bar, over the prompts keeping two or more
      of them, and J_base,kept is the raw base Jaccard over those same prompts (so dropping whole
      prompts does not count as an effect of quality control); for E likewise,
      (E_base,kept - E_base,passing) / drop_E;
    - aggregation: Y = one aligned answer's word-bag coverage of what the other base answers say
      together, Z = one base answer's (leave-one-out, ``metrics.coverage``); the same by sentences.

    A negative quality part means removing the low-quality base responses makes the base set *more*
    diverse: they were not the source of its diversity.
    """
    drop_j = raw["drop"]["jaccard"]
    base_j = raw["base"]["jaccard"]["mean"]
    aligned_j = raw["aligned"]["jaccard"]["mean"]
    word = cov["wordbag"]
    coverage_part = (
        f"one aligned answer covers {_percent(word['aligned_single'])} of the words the other base answers use "
        f"between them, against {_percent(word['base_single'])} for one base answer"
        if word["aligned_single"] is not None and word["base_single"] is not None
        else "coverage could not be computed"
    )
    emb = cov.get("embedding")
    if emb and emb.get("aligned_single") is not None and emb.get("base_single") is not None:
        coverage_part += (
            f" ({_percent(emb['aligned_single'])} against {_percent(emb['base_single'])} of their sentences)"
        )
    if drop_j is None or drop_j <= 0:
        return (
            f"There is no drop in diversity to explain by word-bag Jaccard (base {base_j:.3f}, aligned "
            f"{aligned_j:.3f}); {coverage_part}."
        )
    filtered, kept = passing.get("jaccard_filtered"), passing.get("jaccard_raw_kept")
    if filtered is None or kept is None:
        quality_part = f"no prompt keeps two base responses that pass {quality_bar}"
    else:
        share = (filtered - kept) / drop_j
        quality_part = (
            f"{_percent(share)} disappears when the base responses failing {quality_bar} are removed"
            if share >= 0
            else f"removing the base responses failing {quality_bar} widens it by {_percent(-share)}"
        )
        drop_e = raw["drop"]["embedding"]
        e_filtered, e_kept = passing.get("embedding_filtered"), passing.get("embedding_raw_kept")
        if drop_e and drop_e > 0 and e_filtered is not None and e_kept is not None:
            quality_part += f" ({_percent((e_kept - e_filtered) / drop_e)} of the drop in embedding diversity)"
    return (
        f"Of the rise in within-prompt word-bag Jaccard from base to aligned ({base_j:.3f} to {aligned_j:.3f}), "
        f"{quality_part}; {coverage_part}."
    )


# ---------------------------------------------------------------------------------------------
# Judge parts


def _items(s: SampleSet, questions: Mapping[int, str]) -> tuple[list[tuple[int, int]], list[tuple[str, str]]]:
    """(prompt id, sample index) and (question, answer) of every response whose prompt has a text."""
    where = [(pid, i) for pid in s.prompt_ids() if pid in questions for i in range(len(s.by_prompt[pid]))]
    return where, [(questions[pid], s.by_prompt[pid][i]) for pid, i in where]


def _unparsed_json(verdicts: Sequence[Verdict[Any]]) -> dict[str, Any]:
    problems = Counter(v.problem.split(":")[0] for v in verdicts if not v.ok)
    return {"n_judged": len(verdicts), "n_unparsed": sum(problems.values()), "problems": dict(problems)}


_Judged = list[tuple[tuple[int, int], Verdict[Any]]]


def _judge_quality(
    judge: Judge, sets: Mapping[str, SampleSet], questions: Mapping[int, str], embedder: Any | None
) -> tuple[dict[str, Any], _Judged]:
    """Per set: mean score per aspect (per-prompt means, interval over prompts), the share of
    responses judged unhelpful, and the set's diversity on responses with helpfulness >= 3. Also
    the base set's verdicts by (prompt id, sample index)."""
    out: dict[str, Any] = {}
    base_verdicts: _Judged = []
    for role, s in sets.items():
        where, items = _items(s, questions)
        verdicts = judge.quality(items)
        if role == "base":
            base_verdicts = list(zip(where, verdicts, strict=True))
        by_prompt: dict[int, list[Verdict[Any]]] = {}
        for (pid, _), verdict in zip(where, verdicts, strict=True):
            by_prompt.setdefault(pid, []).append(verdict)
        aspects = {}
        for aspect in ASPECTS:
            means = [
                float(np.mean([getattr(v.value, aspect) for v in vs if v.value is not None]))
                for vs in by_prompt.values()
                if any(v.ok for v in vs)
            ]
            aspects[aspect] = _est(mean_ci(means))
        unhelpful = [
            sum(v.value.helpfulness < HELPFUL_BAR for v in vs if v.value is not None) for vs in by_prompt.values()
        ]
        parsed = [sum(v.ok for v in vs) for vs in by_prompt.values()]
        keep = {
            pid: [v.value is not None and v.value.helpfulness >= HELPFUL_BAR for v in vs]
            for pid, vs in by_prompt.items()
        }
        judged_set = _restrict(s, sorted(by_prompt))
        out[role] = {
            "label": s.label,
            "scores": aspects,
            "unhelpful_share": _est(ratio_ci(np.array(unhelpful, float), np.array(parsed, float))),
            "diversity_passing": diversity_after_filter(judged_set, keep, embedder=embedder).to_json(),
            **_unparsed_json(verdicts),
        }
    return out, base_verdicts


def _judge_coverage(judge: Judge, base: SampleSet, aligned: SampleSet, questions: Mapping[int, str]) -> dict[str, Any]:
    """Per prompt with two or more base answers: the aligned first answer and the base first answer,
    each against B = the other base answers joined. Means of missing_from_a and topic counts."""
    ids = [
        pid
        for pid in base.prompt_ids()
        if pid in questions and len(base.by_prompt[pid]) >= 2 and aligned.by_prompt.get(pid)
    ]
    items: list[tuple[str, str, str]] = []
    for pid in ids:
        others = base.by_prompt[pid][1:]
        text_b = "\n\n".join(f"Reply {k}: {t}" for k, t in enumerate(others, start=1))
        items.append((questions[pid], aligned.by_prompt[pid][0], text_b))
        items.append((questions[pid], base.by_prompt[pid][0], text_b))
    verdicts = judge.compare(items)
    out: dict[str, Any] = {"n_prompts": len(ids), "b": "the base answers after the first, joined"}
    for offset, role in ((0, "aligned"), (1, "base")):
        vs = verdicts[offset::2]
        ok = [v.value for v in vs if v.value is not None]
        out[role] = {
            "missing_from_a": _est(mean_ci([c.missing_from_a for c in ok])),
            "topics_a_only": _est(mean_ci([len(c.topics_a_only) for c in ok])),
            "topics_b_only": _est(mean_ci([len(c.topics_b_only) for c in ok])),
            "topics_both": _est(mean_ci([len(c.topics_both) for c in ok])),
            **_unparsed_json(vs),
        }
    return out


def _judge_stance(judge: Judge, s: SampleSet, questions: Mapping[int, str]) -> dict[str, Any]:
    """Stance labels aggregated by ``metrics.stance``; it needs the same number of samples per prompt,
    so prompts with another count than the commonest are left out (counted)."""
    counts = Counter(len(s.by_prompt[pid]) for pid in s.prompt_ids() if pid in questions)
    if not counts:
        return {"label": s.label, "n_prompts": 0}
    n, _ = counts.most_common(1)[0]
    ids = [pid for pid in s.prompt_ids() if pid in questions and len(s.by_prompt[pid]) == n]
    verdicts = judge.stance([(questions[pid], t) for pid in ids for t in s.by_prompt[pid]])
    labels = [v.value.stance if v.value is not None else None for v in verdicts]
    summary = stance_summary(labels, n, source=f"judge stance labels of {s.label}")
    return {
        "label": s.label,
        **summary.to_json(),
        "distributional_pluralism": _number(summary.prompts_with_yes_and_no.mean),
        "overton_pluralism": _number(summary.both.mean),
        "n_prompts_left_out": sum(counts.values()) - len(ids),
        **_unparsed_json(verdicts),
    }


def _sanity(
    judge: Judge,
    base: SampleSet,
    questions: Mapping[int, str],
    base_verdicts: _Judged,
    embedder: Any | None,
    off_topic_cosine: float,
) -> dict[str, Any]:
    """What the judge gives answers that deserve the lowest scores (an empty answer, the question
    copied back) on the first few prompts, and the helpfulness it gave the base responses the
    judge-free filters flag against those they pass (a sound judge separates them)."""
    ids = [pid for pid in base.prompt_ids() if pid in questions][:SANITY_PROMPTS]
    probes = [(questions[pid], "") for pid in ids] + [(questions[pid], questions[pid]) for pid in ids]
    verdicts = judge.quality(probes)

    def mean_help(vs: Sequence[Verdict[Any]]) -> float | None:
        scores = [v.value.helpfulness for v in vs if v.value is not None]
        return float(np.mean(scores)) if scores else None

    k = len(ids)
    empty_help, copied_help = mean_help(verdicts[:k]), mean_help(verdicts[k:])
    flags = flag_responses(base, embedder=embedder, prompts=questions, off_topic_cosine=off_topic_cosine)
    flagged = [v for (pid, i), v in base_verdicts if not flags[pid][i].passed]
    passed = [v for (pid, i), v in base_verdicts if flags[pid][i].passed]
    flagged_help, passed_help = mean_help(flagged), mean_help(passed)
    # sound: the probes score below the bar, real answers that pass the filters score above the
    # probes (a judge giving 1 to everything must not pass), and flagged responses below passing ones
    sound = (
        empty_help is not None
        and copied_help is not None
        and max(empty_help, copied_help) < HELPFUL_BAR
        and passed_help is not None
        and passed_help > max(empty_help, copied_help)
        and (flagged_help is None or flagged_help < passed_help)
    )
    return {
        "empty_answer_helpfulness": empty_help,
        "question_copied_helpfulness": copied_help,
        "probes": k,
        "expected": f"both below {HELPFUL_BAR}, real answers that pass the filters above both, "
        "flagged responses below passing ones",
        "filter_agreement": {
            "helpfulness_flagged": flagged_help,
            "helpfulness_passed": passed_help,
            "n_flagged": len(flagged),
            "n_passed": len(passed),
        },
        "passed": sound,
    }
