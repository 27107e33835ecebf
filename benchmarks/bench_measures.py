"""Time the diversity measures beyond the paper (docs/method.md §9) over the paper's ConflictingQA
release, beyond today's lexical pass.

    python benchmarks/bench_measures.py [--release DIR] [--embed] [--repeat N] [--parts]

Steps, in one fresh process (text memos empty at the start):

1. today's lexical pass (``lexical.diversity`` of every file), as ``lite-align diversity`` runs it;
2. the sentence vectors: random unit vectors of 384 dimensions (the timing of the embedding
   measures does not depend on the values), or with ``--embed`` the default embedder's, read from
   its cache (the first run fills the cache, which takes minutes);
3. everything the reports will add, as they will run it: one ``TextCache`` shared by all files
   (word tokens, n-gram ids, ROUGE tokens of each distinct text once), ``measure_set`` of every
   file, its JSON block, and the agreement table with the paper's per-prompt measures. The word
   tokens come from ``lite_align.text.tokenize``, whose chunk memos the lexical pass has filled:
   that is the tokenization the two passes share.

Step 3 is the figure "beyond the lexical pass" (target: at most 10 s for the 13,020 responses);
``--repeat N`` runs it N times with a fresh TextCache and keeps the fastest. ``--parts`` also times
each shared input and each measure alone. Every step prints wall-clock and CPU seconds of this
process (the CPU figure is less disturbed by other work) and the machine's load average.

Measured 2026-12-03 on the 2-vCPU machine, shared with other work (1-minute load average as the
script prints it), ``--embed``, all 13,020 responses:

    16:50 UTC, load 0.4-0.8   lexical pass 5.2 s wall (4.2 s cpu); vectors from the cache 0.3 s;
                              new measures 10.1 s wall (8.9 s cpu) the first time in the process,
                              7.8 s wall (7.6 s cpu) the second
    16:52 UTC, load 2.1       lexical pass 4.4 s wall (3.7 s cpu); new measures 9.4 s wall (8.7 s cpu)

In the same runs today's lexical pass took 4.4-5.2 s against the README's 2.45 s on a quiet
machine (1.6 s and 0.85 s to load Punkt): at that speed the new measures take about 4-5 s.
By part (cpu, load 2.1): xz 1.25 s, word tokens 1.1 s, n-gram tables 0.86 s, homogenization
0.65 s, self-repetition 0.53 s, Self-BLEU 0.45 s, ROUGE-1 classes 0.39 s, n-gram diversity 0.32 s,
n-gram Vendi 0.27 s, embedding Vendi and classes 0.25 s, whitespace words 0.22 s, ROUGE tokens
0.22 s, gzip 0.15 s, EAD 0.06 s, the bootstrap intervals and agreement tables the rest. The word
tokens are ``text.tokenize`` with the memos the lexical pass filled; a lexical pass that read its
tokens from the same ``TextCache`` would save that second tokenization (1.1 s cpu here). Peak
memory 525 MB, against 243 MB after the lexical pass: mostly the tokens of the 12,022 distinct
texts that the TextCache keeps.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable
from functools import partial
from operator import attrgetter
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lite_align.data import SampleSet  # noqa: E402
from lite_align.metrics.lexical import DiversityResult, diversity  # noqa: E402
from lite_align.metrics.measures import (  # noqa: E402
    MEASURES,
    MeasuresResult,
    PromptSamples,
    TextCache,
    agreement_json,
    measure_set,
    paper_series,
)
from lite_align.readers import read_samples  # noqa: E402

T = TypeVar("T")


def default_release() -> Path:
    env = os.environ.get("LITE_ALIGN_PAPER_RELEASE")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared/data/paper-release"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def timed(label: str, fn: Callable[[], T]) -> tuple[T, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{label:<44} {wall:7.3f} s wall {cpu:7.3f} s cpu  peak {peak_mb():5.0f} MB  ({load()})", flush=True)
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


def cached_vectors(sets: list[SampleSet]) -> list[dict[int, np.ndarray]]:
    from lite_align.embed import OnnxEmbedder, default_embedder_spec
    from lite_align.metrics.measures import vectors_by_prompt

    embedder = OnnxEmbedder(default_embedder_spec())
    return [vectors_by_prompt(s, embedder) for s in sets]


def reports_pass(
    sets: list[SampleSet], vectors: list[dict[int, np.ndarray]], lexical: list[DiversityResult]
) -> tuple[list[MeasuresResult], list[dict[str, Any]], list[dict[str, Any]]]:
    """What the reports add per file: the measures, their JSON block and the agreement table."""
    cache = TextCache()
    results, blocks, tables = [], [], []
    for s, v, lex in zip(sets, vectors, lexical, strict=True):
        r = measure_set(s, vectors=v, text_cache=cache)
        results.append(r)
        blocks.append(r.to_json())
        tables.append(agreement_json(r, paper_series(lex, v)))
    return results, blocks, tables


def _every(prompts: list[PromptSamples], fn: Callable[[PromptSamples], object]) -> list[object]:
    return [fn(p) for p in prompts]


def time_parts(sets: list[SampleSet], vectors: list[dict[int, np.ndarray]]) -> None:
    print("\n-- by part (prompts prepared once; each shared input timed on its first use)")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--release", type=Path, default=default_release())
    parser.add_argument("--embed", action="store_true", help="the default embedder's vectors, from its cache")
    parser.add_argument("--repeat", type=int, default=1, help="run the measures N times, keep the fastest")
    parser.add_argument("--parts", action="store_true", help="also time each shared input and measure alone")
    args = parser.parse_args()
    root = args.release / "ConflictingQA" if (args.release / "ConflictingQA").is_dir() else args.release
    found = sorted(p for p in (root / "outputs").iterdir() if (p / "samples.jsonl").is_file()) if root.is_dir() else []
    if not found:
        sys.exit(f"error: no outputs/*/samples.jsonl under {root}; pass --release or set LITE_ALIGN_PAPER_RELEASE")
    print(f"start: {load()}")
    sets = [s for d in found for s in read_samples(d)]
    n = sum(s.n_responses for s in sets)
    print(f"{len(sets)} sample sets, {sum(s.n_prompts for s in sets):,} prompts, {n:,} responses\n")

    lexical, lex_wall, lex_cpu = timed("1. today's lexical pass (memos empty)", lambda: [diversity(s) for s in sets])
    source = "the default embedder's cache" if args.embed else "random unit vectors"
    vectors, vec_wall, vec_cpu = timed(
        f"2. sentence vectors ({'cache' if args.embed else 'random'})",
        lambda: cached_vectors(sets) if args.embed else random_vectors(sets),
    )
    best: tuple[float, float] | None = None
    results: list[MeasuresResult] = []
    for i in range(max(1, args.repeat)):
        (results, _, tables), wall, cpu = timed(
            f"3. measures + JSON + agreement (run {i + 1})", partial(reports_pass, sets, vectors, lexical)
        )
        best = (wall, cpu) if best is None or wall < best[0] else best
    assert best is not None
    if args.parts:
        time_parts(sets, vectors)

    print(f"\nend: {load()}")
    print(f"today's lexical pass: {lex_wall:.2f} s wall, {lex_cpu:.2f} s cpu")
    print(f"sentence vectors ({source}): {vec_wall:.2f} s wall, {vec_cpu:.2f} s cpu")
    print(
        f"beyond the lexical pass, every new measure of {n:,} responses: {best[0]:.2f} s wall, {best[1]:.2f} s cpu "
        "(target: at most 10 s)"
    )

    keys = results[0].keys
    short = [r.label.replace("llama-2-icl-gpt-3.5-", "icl-").replace("-prompt_similar", "")[:13] for r in results]
    print(f"\nmeans over prompts (embedding measures: {source})")
    print(f"{'':<28}" + "".join(f"{label:>14}" for label in short))
    for k in keys:
        print(f"{k:<28}" + "".join(f"{r.estimates[k].mean:14.3f}" for r in results))
    print(f"{'ead_across_prompts':<28}" + "".join(f"{r.ead_across_prompts:14.3f}" for r in results))

    rho = np.nanmean([np.array(t["rho"], dtype=np.float64) for t in tables], axis=0)
    names = tables[0]["keys"]
    print("\nagreement: Spearman rho over prompts, oriented (+ = same ranking by diversity), mean over the files")
    print(f"{'':<28}" + "".join(f"{k[:6]:>7}" for k in names))
    for i, k in enumerate(names):
        print(f"{k:<28}" + "".join(f"{v:7.2f}" for v in rho[i]))


if __name__ == "__main__":
    main()
