"""Time the lexical pipeline on the paper's ConflictingQA release: reading, tokenizing, metrics.

    python benchmarks/bench_lexical.py [--release DIR] [--all] [--nltk]

DIR is the release's root (holding ConflictingQA/) or ConflictingQA/ itself; by default where
lite_align finds it ($LITE_ALIGN_PAPER_RELEASE, else the `lite-align release fetch` folder). The six
sampled sets of the reference table are timed (13,020 responses), every set of outputs/ with
``--all``. Every step is timed in a fresh process
state (tokenizer memos empty): wall-clock seconds and CPU seconds of this process (the CPU figure is
less disturbed by other work on the machine). ``--nltk`` also times plain NLTK on the same texts.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lite_align import text  # noqa: E402
from lite_align.data import SampleSet  # noqa: E402
from lite_align.metrics.lexical import diversity  # noqa: E402
from lite_align.readers import read_samples  # noqa: E402

T = TypeVar("T")


REFERENCE_SETS = (
    "llama-2-base",
    "mistral",
    "mistral-instruct",
    "gpt-3.5-turbo",
    "llama-2-icl-gpt-3.5-rand",
    "llama-2-icl-gpt-3.5-knn-prompt_similar",
)


def default_release() -> Path:
    from lite_align.release import release_root

    return release_root()


def timed(label: str, n: int, fn: Callable[[], T]) -> T:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rate = f"{n / wall:10,.0f} responses/s" if n > 1 else ""
    print(f"{label:<34} {wall:7.3f} s wall {cpu:7.3f} s cpu {rate}")
    return result


def read_all(dirs: list[Path]) -> list[SampleSet]:
    return [s for d in dirs for s in read_samples(d)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--release", type=Path, default=default_release())
    parser.add_argument("--all", action="store_true", help="every set of outputs/, not only the reference's six")
    parser.add_argument("--nltk", action="store_true", help="also time plain NLTK (about 10 s)")
    args = parser.parse_args()
    root = args.release / "ConflictingQA" if (args.release / "ConflictingQA").is_dir() else args.release
    found = sorted(p for p in (root / "outputs").iterdir() if (p / "samples.jsonl").is_file()) if root.is_dir() else []
    dirs = found if args.all else [p for p in found if p.name in REFERENCE_SETS]
    if not dirs:
        sys.exit(f"error: no outputs/*/samples.jsonl under {root}; run `lite-align release fetch` or pass --release")

    timed("load tokenizer (Punkt, rules)", 1, lambda: text.tokenize("Warm up. Done."))
    sets = timed(f"read {len(dirs)} files", 1, lambda: read_all(dirs))
    texts = [t for s in sets for v in s.by_prompt.values() for t in v]
    n = len(texts)
    chars = sum(map(len, texts))
    print(f"  {len(sets)} sample sets, {n:,} responses ({len(set(texts)):,} distinct), {chars:,} chars")
    text.clear_caches()
    timed("tokenize, cold (memos empty)", n, lambda: [text.tokenize(t) for t in texts])
    timed("tokenize, warm (memos full)", n, lambda: [text.tokenize(t) for t in texts])
    text.clear_caches()
    timed("metrics incl. tokenizing, cold", n, lambda: [diversity(s) for s in sets])
    timed("metrics, warm", n, lambda: [diversity(s) for s in sets])
    text.clear_caches()
    results = timed("read + metrics, cold (end to end)", n, lambda: [diversity(s) for s in read_all(dirs)])
    for r in results:
        print(f"  {r.label:<40} jaccard {r.jaccard_within.mean:.4f}  length {r.length_mean.mean:6.1f}")
    if args.nltk:
        timed("plain NLTK word_tokenize", n, lambda: [text.nltk_word_tokenize(t) for t in texts])


if __name__ == "__main__":
    main()
