"""Library calls behind the analysis commands (diversity, recover, stance, bench).

Each takes paths or names and returns a plain dict keyed as the CLI's --json documents are.
"""

from __future__ import annotations

from typing import Any

from .analysis import diversity_table, recover_table
from .bench import SWEEP_SEQUENCES, run_bench, run_bench_generator, run_sweep, sweep_sequences
from .compare import released_prompts
from .data import ModelRef, SampleSet, failure_text
from .errors import ConfigError, SamplesFileError
from .explain import explain
from .generation import backend
from .judge_check import with_agreement
from .loaders import model_ref, open_generator, open_judge, registry_embedder
from .metrics.stance import stance_summary
from .readers import check_aligned, read_samples, read_stance_labels
from .registry import load_registry
from .tuning import ALL_LAYERS, EngineTuner, cpu_budget, prepare_threads, thread_candidates


def _sets_by_path(paths: list[str]) -> dict[str, SampleSet]:
    """PATH -> its sample set; a run directory with several conditions gives 'PATH[condition]'."""
    out: dict[str, SampleSet] = {}
    for p in paths:
        sets = read_samples(p)
        if len(sets) == 1:
            out[p] = _usable(sets[0], p)
        else:
            for s in sets:
                out[f"{p}[{s.label}]"] = _usable(s, f"{p}[{s.label}]")
    return out


def _usable(s: SampleSet, name: str) -> SampleSet:
    """``s``, unless every prompt in it failed (a released file like that is refused by the reader)."""
    if not s.by_prompt:
        why = f" ({failure_text(s.failed_reasons)})" if s.failed_reasons else ""
        raise SamplesFileError(f"{name}: no prompt has usable samples{why}; nothing to analyse, leave it out")
    return s


def diversity_of_paths(paths: list[str], *, embeddings: bool = False, embedder: str | None = None) -> dict[str, Any]:

    sets = _sets_by_path(paths)
    encoder = registry_embedder(embedder) if embeddings else None
    return diversity_table(sets, encoder, require_pairs=False)


def _single(path: str, what: str) -> SampleSet:
    sets = _sets_by_path([path])
    if len(sets) != 1:
        names = ", ".join(sets)
        raise SamplesFileError(f"{what} {path} holds several sample sets ({names}); give one samples file")
    return next(iter(sets.values()))


def recover_paths(
    reference: str, candidates: list[str], baseline: str | None, *, embeddings: bool = True, embedder: str | None = None
) -> dict[str, Any]:

    ref = _single(reference, "--reference")
    base = _single(baseline, "--baseline") if baseline else None
    cands = _sets_by_path(candidates)
    _check_line_counts(ref, [*cands.values(), *([base] if base else [])])
    encoder = registry_embedder(embedder) if embeddings else None
    if base is not None:
        # greedy comparisons: the reference's (greedy) sample 0 against the sampled baseline
        return recover_table(ref, cands, encoder, baseline=base, greedy_reference=ref)
    return recover_table(ref, cands, encoder)


def _check_line_counts(reference: SampleSet, others: list[SampleSet]) -> None:
    """Released samples files are aligned line by line with their prompt set: a file with another
    line count than the reference belongs to another prompt set (or was cut short), and comparing
    the lines they share would silently measure a subset. lite_align runs may lack skipped prompts,
    so they are matched by prompt id instead."""

    def is_run(s: SampleSet) -> bool:
        return str(s.settings.get("format", "")).startswith("lite_align.run")

    if is_run(reference):
        return
    paper = [s for s in others if not is_run(s)]
    check_aligned(
        paper, reference.n_prompts + reference.n_failed, against=f"the reference {reference.source or reference.label}"
    )


def stance_of_paths(paths: list[str], samples_per_prompt: int) -> dict[str, Any]:

    out = {}
    for p in paths:
        labels = read_stance_labels(p)
        out[p] = stance_summary(labels, samples_per_prompt, source=p, failed=labels.failed).to_json()
    return out


def _bench_model(model: str | None, registry_path: str | None) -> ModelRef:
    """--model (a registry name or a .gguf path; default: the default pair's base model), resolved."""
    reg = load_registry(registry_path)
    return model_ref(reg, model or reg.pair(reg.default_pair).base, "base")


def bench_model(
    model: str | None,
    registry_path: str | None,
    *,
    threads: str = "auto",
    batch: str = "auto",
    gpu_layers: str = "auto",
    say: Any = None,
    **sizes: Any,
) -> dict[str, Any]:
    """``lite-align bench``: one setting (auto: the calibrated one, as ``run`` uses). A model of a
    backend that is not a local file is measured through its generator as it is (engine tokens/s)."""
    ref = _bench_model(model, registry_path)
    if not backend(ref.backend).local_file:
        gen = open_generator(ref)
        try:
            return run_bench_generator(gen, ref.name, ref.backend, progress=say, **sizes)
        finally:
            gen.close()
    name, path = ref.name, ref.path
    settings = EngineTuner.from_options(threads, batch, gpu_layers, say=say).settings_for(path)
    result = run_bench(
        path,
        n_threads=settings.threads,
        max_sequences=settings.sequences,
        n_gpu_layers=settings.gpu_layers,
        progress=say,
        **sizes,
    )
    result["model"] = name
    result["settings"]["chosen_by"] = settings.source
    return result


def parse_grid(value: str | None, option: str, default: tuple[int, ...], *, low: int = 1) -> tuple[int, ...]:
    """A sweep axis: ``auto`` or None -> ``default``; "1,2,4" -> (1, 2, 4).

    >>> parse_grid("2,1", "--threads", (1,)), parse_grid(None, "--batch", (16,))
    ((1, 2), (16,))
    """
    if value is None or value.strip().lower() == "auto":
        return default
    try:
        out = tuple(sorted({int(v) for v in value.split(",") if v.strip()}))
    except ValueError:
        out = ()
    if not out or out[0] < low:
        raise ConfigError(f"{option}: give auto or comma-separated whole numbers of at least {low}, not {value!r}")
    return out


def bench_sweep(
    model: str | None,
    registry_path: str | None,
    *,
    threads: str | None = None,
    batch: str | None = None,
    gpu_layers: str | None = None,
    say: Any = None,
    **sizes: Any,
) -> dict[str, Any]:
    """``lite-align bench --sweep``: tokens/s over threads x live sequences (x GPU layers where
    the llama.cpp build offloads), with the cell the auto selection rule picks."""
    ref = _bench_model(model, registry_path)
    if not backend(ref.backend).local_file:
        raise ConfigError(f"--sweep: {ref.name} is served by {ref.backend}; a sweep tunes local GGUF models")
    name, path = ref.name, ref.path
    thread_grid = parse_grid(threads, "--threads", thread_candidates(cpu_budget().threads))
    prepare_threads(max(thread_grid))
    import llama_cpp

    gpu_default = (0, ALL_LAYERS) if llama_cpp.llama_supports_gpu_offload() else (0,)
    gpu_grid = parse_grid(gpu_layers, "--gpu-layers", gpu_default, low=0)
    total = int(sizes.get("n_prompts", 8)) * int(sizes.get("n_samples", 5))
    seq_grid = parse_grid(batch, "--batch", sweep_sequences(SWEEP_SEQUENCES, total))
    result = run_sweep(path, threads=thread_grid, sequences=seq_grid, gpu_layers=gpu_grid, progress=say, **sizes)
    result["model"] = name
    result["gpu_offload"] = bool(llama_cpp.llama_supports_gpu_offload())
    return result


def _pick(path: str, default_condition: str, what: str) -> SampleSet:
    """``PATH`` or ``PATH#condition``: one sample set; a run directory defaults to ``default_condition``."""
    base_path, _, condition = path.partition("#")
    sets = {s.label: s for s in read_samples(base_path)}
    if len(sets) == 1 and not condition:
        return _usable(next(iter(sets.values())), f"{what} {path}")
    name = condition or default_condition
    if name not in sets:
        raise SamplesFileError(
            f"{what} {path}: no condition '{name}' (it holds {', '.join(sets)}); write {base_path}#CONDITION"
        )
    return _usable(sets[name], f"{what} {path}")


def explain_paths(
    base: str,
    aligned: str,
    *,
    judge: str | None = None,
    prompts: str | None = None,
    registry: str | None = None,
    embedder: str | None = None,
    judge_prompts: int | None = None,
) -> dict[str, Any]:
    from pathlib import Path

    b, a = _pick(base, "base", "--base"), _pick(aligned, "chat", "--aligned")
    texts = {**a.prompts, **b.prompts}
    if prompts or not texts:
        found, _ = released_prompts(Path(base.partition("#")[0]), prompts, [b])
        texts.update(found)
    the_judge = open_judge(judge, registry) if judge else None
    try:
        result = explain(
            b,
            a,
            embedder=registry_embedder(embedder),
            judge=the_judge,
            prompts=texts or None,
            judge_prompts=judge_prompts,
        )

        return with_agreement(result, the_judge)  # the judge's measured agreement heads its figures
    finally:
        if the_judge is not None:
            the_judge.generator.close()
