"""Time the diversity measures of issue 14 on the paper's ConflictingQA release, beside today's
lexical pass.

    python benchmarks/bench_measures.py [--release DIR] [--embed]

Sentence vectors are taken as given: random unit vectors of 384 dimensions (the timing of the
embedding measures does not depend on the values), or with ``--embed`` the default embedder's
vectors (from its cache; the first run fills the cache, which takes minutes and is not timed).
Every step prints wall-clock and CPU seconds of this process; the CPU figure is less disturbed by
other work on the machine. Run in a fresh process: the lexical pass tokenizes with empty memos.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from operator import attrgetter
from pathlib import Path
from typing import TypeVar

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lite_align.data import SampleSet  # noqa: E402
from lite_align.metrics.lexical import diversity  # noqa: E402
from lite_align.metrics.measures import (  # noqa: E402
    MEASURES,
    PromptSamples,
    TextCache,
    measure_agreement,
    measure_set,
)
from lite_align.readers import read_samples  # noqa: E402

T = TypeVar("T")


def default_release() -> Path:
    env = os.environ.get("LITE_ALIGN_PAPER_RELEASE")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared/data/paper-release"


def timed(label: str, fn: Callable[[], T]) -> tuple[T, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{label:<40} {wall:7.3f} s wall {cpu:7.3f} s cpu")
    return result, wall, cpu


def random_vectors(sets: list[SampleSet], dim: int = 384) -> list[dict[int, np.ndarray]]:
    rng = np.random.default_rng(0)
    out = []
    for s in sets:
        vecs = {}
        for pid, texts in s.by_prompt.items():
            x = rng.normal(size=(len(texts), dim)).astype(np.float32)
            vecs[pid] = x / np.linalg.norm(x, axis=1, keepdims=True)
        out.append(vecs)
    return out


def embedded_vectors(sets: list[SampleSet]) -> list[dict[int, np.ndarray]]:
    from lite_align.embed import OnnxEmbedder, default_embedder_spec
    from lite_align.metrics.measures import vectors_by_prompt

    embedder = OnnxEmbedder(default_embedder_spec())
    return [vectors_by_prompt(s, embedder) for s in sets]


def _every(prompts: list[PromptSamples], fn: Callable[[PromptSamples], object]) -> list[object]:
    return [fn(p) for p in prompts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--release", type=Path, default=default_release())
    parser.add_argument("--embed", action="store_true", help="use the default embedder's vectors (cached)")
    args = parser.parse_args()
    root = args.release / "ConflictingQA" if (args.release / "ConflictingQA").is_dir() else args.release
    dirs = sorted(p for p in (root / "outputs").iterdir() if (p / "samples.jsonl").is_file())
    if not dirs:
        sys.exit(f"error: no outputs/*/samples.jsonl under {root}; pass --release")
    sets = [s for d in dirs for s in read_samples(d)]
    n = sum(s.n_responses for s in sets)
    print(f"{len(sets)} sample sets, {sum(s.n_prompts for s in sets):,} prompts, {n:,} responses")
    vectors = embedded_vectors(sets) if args.embed else random_vectors(sets)

    print("\n-- today's lexical pass (tokenizer memos empty)")
    lexical, _, _ = timed("lexical diversity, all files", lambda: [diversity(s) for s in sets])

    print("\n-- every new measure, all files (measure_set)")
    results, wall, cpu = timed(
        "measure_set, all measures", lambda: [measure_set(s, vectors=v) for s, v in zip(sets, vectors, strict=True)]
    )

    print("\n-- the same, by part (prompts prepared once; shared inputs timed on first use)")
    cache = TextCache()
    prompts = [
        PromptSamples(s.by_prompt[pid], v[pid], cache=cache)
        for s, v in zip(sets, vectors, strict=True)
        for pid in s.prompt_ids()
    ]
    shared = ("words", "ngrams", "whitespace_ids", "rouge", "classes_rouge1", "classes_embedding")
    for attr in (*shared, "vendi_ngram", "vendi_embedding"):
        timed(f"  shared input: {attr}", partial(_every, prompts, attrgetter(attr)))
    for m in MEASURES:
        timed(f"  {m.key}", partial(_every, prompts, m.per_prompt))

    print(f"\nall new measures: {wall:.2f} s wall, {cpu:.2f} s cpu for {n:,} responses (target: at most 10 s)")
    keys = results[0].keys
    short = [r.label.replace("llama-2-icl-gpt-3.5-", "icl-").replace("-prompt_similar", "")[:13] for r in results]
    source = "the default embedder" if args.embed else "random vectors"
    print(f"\nmeans over prompts (embedding measures: {source})")
    print(f"{'':<28}" + "".join(f"{label:>14}" for label in short))
    for k in keys:
        print(f"{k:<28}" + "".join(f"{r.estimates[k].mean:14.3f}" for r in results))
    print(f"{'ead_across_prompts':<28}" + "".join(f"{r.ead_across_prompts:14.3f}" for r in results))

    tables = []
    for r, lex in zip(results, lexical, strict=True):
        assert r.prompt_ids == lex.prompt_ids
        tables.append(measure_agreement(r, {"jaccard_within": (lex.per_prompt["jaccard_within"], False)}))
    rho = np.nanmean([t.rho for t in tables], axis=0)
    names = tables[0].keys
    print("\nagreement: Spearman rho over prompts, oriented (+ = same ranking by diversity), mean of the 6 files")
    print(f"{'':<28}" + "".join(f"{k[:6]:>7}" for k in names))
    for i, k in enumerate(names):
        print(f"{k:<28}" + "".join(f"{v:7.2f}" for v in rho[i]))


if __name__ == "__main__":
    main()
