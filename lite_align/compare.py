"""Reading what a report shows, and comparing two runs prompt by prompt.

Reading (``load_report_input``): a lite_align run directory (manifest, samples, results; the results
are recomputed with ``analysis.analyse`` when ``results.json`` is absent), or the paper's released
outputs (one ``samples.jsonl``, its directory, or a directory of such directories, e.g.
``ConflictingQA/outputs``), analysed on the spot with the set named by ``reference`` as teacher.

Comparing (``compare_runs``): for every condition both runs hold, the per-prompt values of every
registered diversity measure that needs no encoder (``metrics.registry``: the ``comparable``
metrics of families without ``embeddings`` or ``token_vectors``), and with an encoder
(``compare --embeddings``) of those on sentence vectors too, are paired over the prompts the
runs share, and the difference B − A is reported with a paired bootstrap interval over prompts
(``stats.diff_ci``). Rates are paired as per-prompt shares of
answers (with the same number of samples per prompt their mean is the pooled rate).
Recoverability is compared on every registered similarity that needs no encoder (word-bag
Jaccard): cross and baseline as paired differences, and the recovery ratio (sum cross / sum
baseline over the shared prompts, as the study defines it) as the difference of the two ratios
under one paired bootstrap. Per-prompt ratios are not averaged: a prompt whose teacher samples
share no words has a baseline of 0.

Prompts are matched by text (whitespace-normalised) when both runs record their prompts
(``prompts.jsonl``, or the prompt-set file named in the manifest with the recorded sha256); when
they do not, by prompt id if both used the same prompt set (same sha256), and the result says so.

Left out: measures and similarities that need the encoder (embedding diversity, embedding cosine,
BERTScore): they would need the ONNX encoder per prompt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .analysis import analyse, diversity_table, max_samples, recorded_vocab_sizes, recover_table
from .conditions import GREEDY_SUFFIX, TEACHER, is_teacher, order_rank
from .data import SampleSet
from .errors import ConfigError, LiteAlignError, PromptFileError, RunDirError
from .loaders import load_embedder, registry_embedder
from .metrics.cross import cross_similarity
from .metrics.registry import Inputs, families, similarities
from .prompts import load_prompt_set
from .readers import check_aligned, read_samples
from .stats import N_BOOT, SEED, Estimate, diff_ci
from .store import read_manifest, read_results

__all__ = ["ReportInput", "compare_runs", "load_compare_embedder", "load_report_input", "read_run"]

PAPER_SAMPLES = "samples.jsonl"


@dataclass(frozen=True)
class ReportInput:
    """Everything a report renders. ``manifest`` is the run's, or for released outputs a short
    description (``kind: "released"``); ``teacher`` names the set whose sample 0 is the reference."""

    path: str
    manifest: dict[str, Any]
    results: dict[str, Any]
    sets: dict[str, SampleSet]
    prompts: dict[int, str] = field(default_factory=dict)
    prompts_source: str = ""
    teacher: str | None = TEACHER


# --------------------------------------------------------------------------------------------------
# Reading


def load_report_input(
    path: str | Path,
    *,
    reference: str | None = None,
    prompts: str | None = None,
    baseline: str | None = None,
    embeddings: bool = False,
    embedder: str | None = None,
) -> ReportInput:
    """A run directory, or released outputs; anything else is refused with a one-line message.
    ``embedder`` names the registry's sentence embedder for fresh analyses (default: its default)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise RunDirError(f"{p}: no such file or directory; give a run directory or a samples file")
    if (p / "manifest.json").is_file():
        if reference is not None or prompts is not None or baseline is not None:
            raise ConfigError(
                "--reference, --prompts and --baseline are for released outputs; a run directory records them"
            )
        return read_run(p, embeddings=embeddings, embedder=embedder)
    if p.is_file() or (p / PAPER_SAMPLES).is_file() or released_dirs(p):
        return read_released(
            p, reference=reference, prompts=prompts, baseline=baseline, embeddings=embeddings, embedder=embedder
        )
    raise RunDirError(
        f"{p} is neither a lite_align run directory (manifest.json) nor released outputs "
        f"({PAPER_SAMPLES}, or folders holding one); point at one of those"
    )


def _embedder(embeddings: bool, name: str | None = None) -> Any:
    if not embeddings:
        return None
    return registry_embedder(name) if name else load_embedder()


def load_compare_embedder(embeddings: bool, name: str | None = None) -> Any:
    """The sentence encoder for ``compare --embeddings`` (``--embedder NAME`` implies it), else None."""
    return _embedder(embeddings or name is not None, name)


def ordered_sets(sets: list[SampleSet]) -> dict[str, SampleSet]:
    ordered = sorted(sets, key=lambda s: (order_rank(s.label), s.label))
    return {s.label: s for s in ordered}


def read_run(path: str | Path, *, embeddings: bool = False, embedder: str | None = None) -> ReportInput:
    """A run directory's manifest, samples, prompt texts and results (recomputed when absent)."""
    run_dir = Path(path).expanduser()
    manifest = read_manifest(run_dir)
    manifest.setdefault("run_dir", str(run_dir))
    sets = ordered_sets(read_samples(run_dir))
    prompts, source = _run_prompts(manifest, sets)
    results = read_results(run_dir)
    if results is None:
        results = analyse(sets, embedder=_embedder(embeddings, embedder), prompts=prompts).to_json()
    results = {k: v for k, v in results.items() if k != "format"}
    return ReportInput(str(run_dir), manifest, results, sets, prompts, source, TEACHER)


def _run_prompts(manifest: Mapping[str, Any], sets: Mapping[str, SampleSet]) -> tuple[dict[int, str], str]:
    """Prompt texts: the run's prompts.jsonl (read with the samples), else the prompt-set file the
    manifest names when its sha256 still matches, else none."""
    for ss in sets.values():
        if ss.prompts:
            return dict(ss.prompts), "prompts.jsonl"
    ps = manifest.get("prompt_set") or {}
    source, sha = ps.get("source"), ps.get("sha256")
    if isinstance(source, str) and sha and Path(source).is_file():
        try:
            pset = load_prompt_set(source, limit=ps.get("n_prompts"))
        except PromptFileError:
            return {}, ""
        if pset.sha256 == sha:
            return {p.id: p.text for p in pset.prompts}, source
    return {}, ""


def released_dirs(p: Path) -> list[Path]:
    if not p.is_dir():
        return []
    return sorted(d for d in p.iterdir() if d.is_dir() and (d / PAPER_SAMPLES).is_file())


def read_released(
    path: str | Path,
    *,
    reference: str | None = None,
    prompts: str | None = None,
    baseline: str | None = None,
    embeddings: bool = False,
    embedder: str | None = None,
) -> ReportInput:
    """The paper's released outputs at ``path``, analysed as a run would be: within-prompt
    diversity of every set and, given ``reference`` (a set's name), recoverability against it.

    Greedy outputs (one sample per prompt) have no baseline of their own: ``baseline`` names the
    reference's sampled outputs, whose within-reference similarity is the baseline (docs/method.md §6);
    without it, recoverability of a one-sample reference is left out and the manifest says why."""
    p = Path(path).expanduser()
    dirs = released_dirs(p) if p.is_dir() and not (p / PAPER_SAMPLES).is_file() else [p]
    found = [s for d in dirs for s in read_samples(d)]
    sets = {s.label: s for s in found}
    if reference is not None and reference not in sets:
        raise ConfigError(f"--reference: no set named '{reference}' in {p}; choose one of {', '.join(sets)}")
    texts, prompts_source = released_prompts(p, prompts, list(sets.values()))
    encoder = _embedder(embeddings, embedder)
    results: dict[str, Any] = {"diversity": diversity_table(sets, encoder, require_pairs=False)}
    note = ""
    if reference is not None and len(sets) > 1:
        ref = sets[reference]
        candidates = {n: s for n, s in sets.items() if n != reference}
        if baseline is not None:
            found_base = read_samples(baseline)
            if len(found_base) != 1:
                raise ConfigError(f"--baseline {baseline} holds {len(found_base)} sample sets; give one samples file")
            base = found_base[0]
            results["recover"] = recover_table(ref, candidates, encoder, baseline=base, greedy_reference=ref)
        elif max_samples(ref) < 2:
            note = f"{reference} has one sample per prompt: give --baseline (its sampled outputs) for recoverability"
        else:
            results["recover"] = recover_table(ref, candidates, encoder)
    manifest: dict[str, Any] = {
        "kind": "released",
        "source": str(p),
        "reference": reference,
        "prompts_source": prompts_source,
        "sets": {name: _set_brief(s, max_samples(s)) for name, s in sets.items()},
    }
    if baseline is not None:
        manifest["baseline"] = baseline
    if note:
        manifest["note"] = note
    return ReportInput(str(p), manifest, results, sets, texts, prompts_source, reference)


def _set_brief(ss: SampleSet, samples: int) -> dict[str, Any]:
    settings = ss.settings
    openai = settings.get("openai_params") or {}
    params = settings.get("params") or {}
    run = settings.get("run") or {}
    return {
        "source": ss.source,
        "model": openai.get("model") or (settings.get("server") or {}).get("model_id") or run.get("name"),
        "temperature": openai.get("temperature", params.get("temperature")),
        "n_prompts": ss.n_prompts,
        "n_failed": ss.n_failed,
        "failed_reasons": dict(ss.failed_reasons),
        "samples": samples,
    }


def released_prompts(path: Path, given: str | None, sets: list[SampleSet]) -> tuple[dict[int, str], str]:
    """--prompts when given (it must match the samples), else ``instances/data.jsonl`` next to the
    outputs (the release's layout) when it matches, else none."""
    if given is not None:
        pset = load_prompt_set(given)
        check_aligned(sets, len(pset), against=f"--prompts {given}")
        return {q.id: q.text for q in pset.prompts}, given
    start = path if path.is_dir() else path.parent
    for folder in (start, *list(start.parents)[:3]):
        candidate = folder / "instances" / "data.jsonl"
        if candidate.is_file():
            try:
                pset = load_prompt_set(str(candidate))
                check_aligned(sets, len(pset))
            except LiteAlignError:
                return {}, ""
            return {q.id: q.text for q in pset.prompts}, str(candidate)
    return {}, ""


# --------------------------------------------------------------------------------------------------
# Comparing


def _text_key(text: str) -> str:
    return " ".join(text.split())


def match_prompts(a: ReportInput, b: ReportInput) -> tuple[list[tuple[int, int]], str]:
    """Pairs (prompt id in A, prompt id in B) of the same prompt, and how they were matched."""
    if a.prompts and b.prompts:
        in_b: dict[str, int] = {}
        for pid, text in sorted(b.prompts.items()):
            in_b.setdefault(_text_key(text), pid)
        pairs, seen = [], set()
        for pid, text in sorted(a.prompts.items()):
            key = _text_key(text)
            if key in in_b and key not in seen:
                seen.add(key)
                pairs.append((pid, in_b[key]))
        return pairs, "prompt text"
    sha_a = (a.manifest.get("prompt_set") or {}).get("sha256")
    sha_b = (b.manifest.get("prompt_set") or {}).get("sha256")
    if sha_a and sha_a == sha_b:
        ids = sorted({pid for s in a.sets.values() for pid in s.by_prompt})
        return [(i, i) for i in ids], f"prompt id (no prompt texts recorded; both runs used prompt set {sha_a[:12]})"
    raise RunDirError(
        f"cannot match the prompts of {a.path} and {b.path}: no prompt texts are recorded (prompts.jsonl) and "
        "their prompt sets differ; compare runs of the same prompt set"
    )


def _per_prompt_diversity(
    ss: SampleSet, vocab_size: int | None = None, embedder: Any | None = None
) -> dict[str, Mapping[int, float]]:
    """Every comparable registered measure's value per prompt id, from the families that need no
    encoder, and with ``embedder`` also from those on sentence vectors (metrics.registry; the
    lexical family gives rates as shares of the prompt's answers). ``vocab_size``: the generating
    model's, as the run recorded it (EAD), where known."""
    out: dict[str, Mapping[int, float]] = {}
    inputs = Inputs(embedder=embedder, vocab_size=vocab_size)
    for family in families():
        if not family.available(inputs):
            continue
        comparable = {m.key for m in family.metrics if m.comparable}
        per_prompt = family.compute(ss, inputs).per_prompt
        out.update({k: v for k, v in per_prompt.items() if k in comparable})
    return out


def _paired(a: Mapping[int, float], b: Mapping[int, float], pairs: list[tuple[int, int]]) -> dict[str, Any]:
    kept = [(a[pa], b[pb]) for pa, pb in pairs if pa in a and pb in b]
    va = np.array([x for x, _ in kept], dtype=np.float64)
    vb = np.array([y for _, y in kept], dtype=np.float64)
    est = diff_ci(vb, va)
    return {
        "a": _num(va.mean()) if va.size else None,
        "b": _num(vb.mean()) if vb.size else None,
        **_estimate(est),
    }


def _estimate(est: Estimate) -> dict[str, Any]:
    return {"diff": _num(est.mean), "ci": [_num(est.lo), _num(est.hi)], "n": est.n}


def _num(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def ratio_difference(cross_a: np.ndarray, base_a: np.ndarray, cross_b: np.ndarray, base_b: np.ndarray) -> Estimate:
    """(sum cross_b / sum base_b) − (sum cross_a / sum base_a) over paired prompts, with a paired
    bootstrap over prompts (the same resampled prompts for both ratios; seed and size as in stats).

    >>> x = np.array([0.2, 0.4]); y = np.array([0.5, 0.5])
    >>> round(ratio_difference(x, y, x, y).mean, 6)
    0.0
    """
    n = int(cross_a.size)
    if n == 0 or base_a.sum() == 0 or base_b.sum() == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), n)
    point = float(cross_b.sum() / base_b.sum() - cross_a.sum() / base_a.sum())
    if n < 2:
        return Estimate(point, float("nan"), float("nan"), n)
    idx = np.random.default_rng(SEED).integers(0, n, size=(N_BOOT, n))
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = cross_b[idx].sum(1) / base_b[idx].sum(1) - cross_a[idx].sum(1) / base_a[idx].sum(1)
    lo, hi = np.nanpercentile(boot, [2.5, 97.5])
    return Estimate(point, float(lo), float(hi), n)


def _cross_per_prompt(run: ReportInput, condition: str, sim: Any) -> tuple[dict[int, float], dict[int, float]] | None:
    """Per-prompt cross and baseline similarity of ``condition`` against the run's teacher, chosen
    as the study does (a greedy condition against the greedy teacher, baseline from the sampled one)."""
    teacher = run.sets.get(TEACHER)
    cand = run.sets[condition]
    if teacher is None:
        return None
    greedy_ref = run.sets.get(TEACHER + GREEDY_SUFFIX)
    if max_samples(cand) < 2 and greedy_ref is not None:
        res = cross_similarity(greedy_ref, cand, sim, baseline=teacher)
    else:
        res = cross_similarity(teacher, cand, sim)
    ids = res.prompt_ids
    cross = dict(zip(ids, res.cross_per_prompt.tolist(), strict=True))
    base = dict(zip(ids, res.baseline_per_prompt.tolist(), strict=True))
    return cross, base


def _recover_pair(
    a: ReportInput, b: ReportInput, condition: str, pairs: list[tuple[int, int]], sim: Any
) -> dict[str, Any]:
    got_a, got_b = _cross_per_prompt(a, condition, sim), _cross_per_prompt(b, condition, sim)
    if got_a is None or got_b is None:
        return {}
    (ca, ba), (cb, bb) = got_a, got_b
    kept = [(pa, pb) for pa, pb in pairs if pa in ca and pb in cb]
    arr = {
        name: np.array([src[p[i]] for p in kept], dtype=np.float64)
        for name, src, i in (("ca", ca, 0), ("ba", ba, 0), ("cb", cb, 1), ("bb", bb, 1))
    }
    ratio = ratio_difference(arr["ca"], arr["ba"], arr["cb"], arr["bb"])

    def ratio_of(c: np.ndarray, base: np.ndarray) -> float | None:
        return float(c.sum() / base.sum()) if c.size and base.sum() else None

    return {
        "cross": _paired(ca, cb, pairs),
        "baseline": _paired(ba, bb, pairs),
        "ratio": {"a": ratio_of(arr["ca"], arr["ba"]), "b": ratio_of(arr["cb"], arr["bb"]), **_estimate(ratio)},
    }


def _run_label(run: ReportInput) -> dict[str, Any]:
    models = run.manifest.get("models") or {}
    settings = run.manifest.get("settings") or {}
    names = " / ".join(str(m.get("name")) for m in models.values() if isinstance(m, Mapping))
    return {
        "path": run.path,
        "models": names,
        "preset": settings.get("preset"),
        "n_prompts": len({pid for s in run.sets.values() for pid in s.by_prompt}),
    }


def compare_runs(a: ReportInput, b: ReportInput, embedder: Any | None = None) -> dict[str, Any]:
    """B − A for every shared condition: lexical diversity (sampled conditions; with ``embedder``
    also the measures on sentence vectors) and Jaccard recoverability (every condition but the
    teacher), paired over the shared prompts, with 95% bootstrap intervals (see the module doc)."""
    pairs, matched_by = match_prompts(a, b)
    if not pairs:
        raise RunDirError(f"{a.path} and {b.path} share no prompt; nothing to compare")
    shared = [c for c in a.sets if c in b.sets]
    if not shared:
        raise RunDirError(f"{a.path} and {b.path} share no condition (A: {', '.join(a.sets)}; B: {', '.join(b.sets)})")
    sims = [s.make(None, {}) for s in similarities() if not s.needs_encoder]
    vocab_a, vocab_b = recorded_vocab_sizes(a.results), recorded_vocab_sizes(b.results)
    conditions: dict[str, Any] = {}
    for cond in shared:
        row: dict[str, Any] = {}
        if max_samples(a.sets[cond]) >= 2 and max_samples(b.sets[cond]) >= 2:  # greedy: nothing within a prompt
            div_a = _per_prompt_diversity(a.sets[cond], vocab_a.get(cond), embedder)
            div_b = _per_prompt_diversity(b.sets[cond], vocab_b.get(cond), embedder)
            row["diversity"] = {k: _paired(div_a[k], div_b[k], pairs) for k in div_a}
        if not is_teacher(cond):
            recs = {sim.name: _recover_pair(a, b, cond, pairs, sim) for sim in sims}
            recs = {k: v for k, v in recs.items() if v}
            if recs:
                row["recover"] = recs
        conditions[cond] = row
    return {
        "a": _run_label(a),
        "b": _run_label(b),
        "matched_by": matched_by,
        "n_shared_prompts": len(pairs),
        "conditions": conditions,
        "only_in_a": [c for c in a.sets if c not in b.sets],
        "only_in_b": [c for c in b.sets if c not in a.sets],
        "note": "B − A over the shared prompts, 95% paired bootstrap intervals over prompts; "
        + ("lexical and embedding measures" if embedder is not None else "lexical measures")
        + " and word-bag Jaccard recoverability only.",
    }
