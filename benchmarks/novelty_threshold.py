"""Read the sentence-embedding threshold of the distinct-answers measure off NoveltyBench's released
classes, and check our ROUGE-1 partition against them.

    python benchmarks/novelty_threshold.py SCORES_JSONL

SCORES_JSONL: NoveltyBench's per-prompt file of an evaluated model, e.g. from a clone of
github.com/novelty-bench/novelty-bench:
``git show HEAD:evaluation/2025-03-27_gemini-1.5-pro/nb-curated/scores.jsonl > scores.jsonl``
(100 prompts x 10 generations with their released partition into classes).

Calibration uses the prompts whose generations all have more than 5 words (there the threshold
alone decides; the short-answer rule does not apply). For every threshold t from 0.50 to 0.95
(step 0.02) those prompts are partitioned with our rule (cosine of the default embedder's sentence
vectors > t) and compared with the released classes: the mean absolute difference in class counts
over prompts (the criterion: the measure is a class count), the bias, the share of identical
partitions, and the balanced accuracy of "similarity > t" for "released in one class" over all
pairs. The threshold with the least mean absolute difference is chosen (ties: the least |bias|).
The same scan over ROUGE-1 thresholds shows where NoveltyBench's 0.458 falls.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lite_align.metrics.novelty import (  # noqa: E402
    EMBEDDING_THRESHOLD,
    ROUGE1_THRESHOLD,
    SHORT_WORDS,
    class_count,
    partition_embedding,
    partition_rouge1,
    short_answer_words,
)
from lite_align.metrics.rouge import rouge_1_f  # noqa: E402


def read_rows(path: Path) -> list[dict[str, object]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows or "partition" not in rows[0] or "generations" not in rows[0]:
        sys.exit(f"error: {path} has no 'generations' and 'partition' fields; give a NoveltyBench scores.jsonl")
    return rows


def compare(theirs: Sequence[Sequence[int]], ours: Sequence[Sequence[int]]) -> tuple[float, float, float, float]:
    """(mean |count difference|, mean (ours - theirs), share identical, our mean count)."""
    ct = np.array([class_count(p) for p in theirs], dtype=float)
    co = np.array([class_count(p) for p in ours], dtype=float)
    same = np.mean([list(a) == list(b) for a, b in zip(theirs, ours, strict=True)])
    return float(np.abs(co - ct).mean()), float((co - ct).mean()), float(same), float(co.mean())


def balanced_accuracy(similarity: np.ndarray, same: np.ndarray, t: float) -> float:
    """Mean of the true-positive and true-negative rates of "similarity > t" for "same class"."""
    said = similarity > t
    return 0.5 * float((said & same).sum() / max(1, same.sum()) + (~said & ~same).sum() / max(1, (~same).sum()))


def scan(
    label: str,
    thresholds: np.ndarray,
    theirs: Sequence[Sequence[int]],
    partition: Callable[[float], list[list[int]]],
    pairs: tuple[np.ndarray, np.ndarray],
) -> float:
    """Print the figures of every threshold; return the one with the least mean |difference| in
    class counts (ties: the least |bias|)."""
    print(f"\n{label}: threshold  mean|diff|   bias  identical  mean classes  pair bal.acc")
    scores = []
    for t in thresholds:
        mad, bias, same, mean = compare(theirs, partition(float(t)))
        scores.append((round(mad, 9), round(abs(bias), 9), float(t)))
        acc = balanced_accuracy(*pairs, float(t))
        print(f"{'':<{len(label)}}  {t:9.3f}  {mad:9.3f}  {bias:+6.2f}  {same:9.2f}  {mean:12.2f}  {acc:12.3f}")
    best = min(scores)
    print(f"{label}: least mean |difference| {best[0]:.3f} (bias {best[1]:.2f} in size) at {best[2]:.2f}")
    return best[2]


def pair_labels(theirs: Sequence[Sequence[int]], sims: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of generations of a prompt: (their similarity, whether released in one class)."""
    values, same = [], []
    for labels, sim in zip(theirs, sims, strict=True):
        for i in range(len(labels)):
            for j in range(i + 1, len(labels)):
                values.append(sim[i, j])
                same.append(labels[i] == labels[j])
    return np.array(values), np.array(same)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scores", type=Path, help="NoveltyBench scores.jsonl")
    args = parser.parse_args()
    rows = read_rows(args.scores)
    theirs = [list(map(int, r["partition"])) for r in rows]  # type: ignore[call-overload]
    gens = [list(map(str, r["generations"])) for r in rows]  # type: ignore[call-overload]
    counts = [class_count(p) for p in theirs]
    distinct = [int(r["distinct"]) for r in rows]  # type: ignore[call-overload]
    print(f"{len(rows)} prompts, {sum(map(len, gens))} generations")
    print(f"released classes per prompt: mean {np.mean(counts):.3f}; 'distinct' field: mean {np.mean(distinct):.3f}")

    mad, bias, same, mean = compare(theirs, [partition_rouge1(g) for g in gens])
    print(
        f"\nall prompts, ROUGE-1 > {ROUGE1_THRESHOLD} with the short-answer rule: mean classes {mean:.2f}, "
        f"mean |diff| {mad:.3f}, bias {bias:+.2f}, identical partitions {same:.2f}"
    )
    # Calibrate where the threshold alone decides: prompts whose generations all have > 5 words.
    long = [k for k, g in enumerate(gens) if all(len(short_answer_words(t)) > SHORT_WORDS for t in g)]
    lt, lg = [theirs[k] for k in long], [gens[k] for k in long]
    print(f"\ncalibration prompts (every generation longer than {SHORT_WORDS} words): {len(long)}")
    rouge_sims = [np.array([[rouge_1_f(a, b) for b in g] for a in g]) for g in lg]
    scan(
        "ROUGE-1",
        np.round(np.arange(0.30, 0.601, 0.02), 3),
        lt,
        lambda t: [partition_rouge1(g, t) for g in lg],
        pair_labels(lt, rouge_sims),
    )

    from lite_align.embed import OnnxEmbedder, default_embedder_spec

    embedder = OnnxEmbedder(default_embedder_spec())
    vectors = [embedder.embed(g) for g in lg]
    units = [v / np.linalg.norm(v, axis=1, keepdims=True) for v in vectors]
    chosen = scan(
        "embedding",
        np.round(np.arange(0.50, 0.951, 0.02), 3),
        lt,
        lambda t: [partition_embedding(g, v, t) for g, v in zip(lg, vectors, strict=True)],
        pair_labels(lt, [u @ u.T for u in units]),
    )
    print(f"\nchosen embedding threshold: {chosen:.2f} (lite_align.metrics.novelty uses {EMBEDDING_THRESHOLD})")


if __name__ == "__main__":
    main()
