"""Library calls behind the analysis commands (diversity, recover, stance, bench).

Each takes paths or names and returns a plain dict keyed as the CLI's --json documents are.
"""

from __future__ import annotations

from typing import Any

from .data import SampleSet
from .errors import SamplesFileError


def _sets_by_path(paths: list[str]) -> dict[str, SampleSet]:
    """PATH -> its sample set; a run directory with several conditions gives 'PATH[condition]'."""
    from .readers import read_samples

    out: dict[str, SampleSet] = {}
    for p in paths:
        sets = read_samples(p)
        if len(sets) == 1:
            out[p] = sets[0]
        else:
            for s in sets:
                out[f"{p}[{s.label}]"] = s
    return out


def diversity_of_paths(paths: list[str], *, embeddings: bool = False, embedder: str | None = None) -> dict[str, Any]:
    from .analysis import diversity_table

    sets = _sets_by_path(paths)
    encoder = _embedder(embedder) if embeddings else None
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
    from .analysis import recover_table

    ref = _single(reference, "--reference")
    base = _single(baseline, "--baseline") if baseline else None
    cands = _sets_by_path(candidates)
    encoder = _embedder(embedder) if embeddings else None
    if base is not None:
        # greedy comparisons: the reference's (greedy) sample 0 against the sampled baseline
        return recover_table(ref, cands, encoder, baseline=base, greedy_reference=ref)
    return recover_table(ref, cands, encoder)


def stance_of_paths(paths: list[str], samples_per_prompt: int) -> dict[str, Any]:
    from .metrics.stance import stance_summary
    from .readers import read_stance_labels

    out = {}
    for p in paths:
        labels = read_stance_labels(p)
        out[p] = stance_summary(labels, samples_per_prompt).to_json()
    return out


def bench_model(model: str | None, registry_path: str | None) -> dict[str, Any]:
    from .bench import run_bench
    from .registry import load_registry, resolve_model_arg

    reg = load_registry(registry_path)
    name = model or reg.pair(reg.default_pair).base
    spec, path = resolve_model_arg(reg, name, "base")
    from .gguf_check import inspect_gguf

    inspect_gguf(path)
    result = run_bench(path)
    result.setdefault("model", spec.name)
    return result


def _embedder(name: str | None = None) -> Any:
    """The registry's embedder ``name`` (--embedder), else its default one."""
    from .errors import RegistryError
    from .registry import load_registry
    from .runner import load_embedder

    try:
        registry = load_registry()
    except RegistryError:  # analysing files outside a project: the packaged default encoder
        if name:
            raise
        registry = None
    return load_embedder(registry, name)
