"""Time `recover` of the paper's released ConflictingQA outputs against gpt-3.5-turbo, cold.

    python benchmarks/bench_recover.py [--release DIR] [--prompts N] [--threads auto|N] [--code DIR]

The work of the README's two commands, in one process and with the three similarities (word-bag
Jaccard, embedding cosine, BERTScore-style F1):

    lite-align recover --reference outputs/gpt-3.5-turbo outputs/*
    lite-align recover --reference outputs-temp0/gpt-3.5-turbo --baseline outputs/gpt-3.5-turbo outputs-temp0/*

"Cold": LITE_ALIGN_CACHE points at a new temporary folder, so no sentence vector is cached and
onnxruntime's thread count is calibrated afresh (that time is included). It prints the sets and
texts, what went through the encoder (texts, model calls), and wall and CPU seconds.

``--code DIR`` times the lite_align package of another checkout (e.g. ``git worktree add
/tmp/before COMMIT``) with this same script, for a before/after on the same machine; a version
without lite_align.tuning runs with its own fixed onnxruntime threads. ``--prompts N`` keeps each
set's first N prompts (a quicker look). The release DIR is its root (holding ConflictingQA/) or
ConflictingQA/ itself; default $LITE_ALIGN_PAPER_RELEASE, else the shared copy beside the
repository.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def default_release() -> Path:
    env = os.environ.get("LITE_ALIGN_PAPER_RELEASE")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared/data/paper-release"


def first_prompts(sample_set: Any, n: int | None) -> Any:
    if n is None:
        return sample_set
    from dataclasses import replace

    keep = sorted(sample_set.by_prompt)[:n]
    return replace(sample_set, by_prompt={pid: sample_set.by_prompt[pid] for pid in keep})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--release", type=Path, default=default_release())
    parser.add_argument("--prompts", type=int, default=None, help="each set's first N prompts (default: all)")
    parser.add_argument("--threads", default="auto", help="onnxruntime intra-op threads: auto or N")
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose lite_align is timed")
    args = parser.parse_args()
    sys.path.insert(0, str(args.code.resolve()))
    root = args.release / "ConflictingQA" if (args.release / "ConflictingQA").is_dir() else args.release
    sampled_dir, greedy_dir = root / "outputs", root / "outputs-temp0"
    if not (sampled_dir / "gpt-3.5-turbo" / "samples.jsonl").is_file():
        sys.exit(f"error: no outputs/gpt-3.5-turbo/samples.jsonl under {root}; pass --release")

    cache = tempfile.TemporaryDirectory(prefix="lite_align-bench-recover-")
    os.environ["LITE_ALIGN_CACHE"] = cache.name  # cold: no vectors, no calibrations

    import lite_align
    from lite_align.analysis import recover_table
    from lite_align.embed import OnnxEmbedder
    from lite_align.readers import read_samples
    from lite_align.runner import embedder_spec

    if (Path(lite_align.__file__).parent / "tuning.py").is_file():
        from lite_align.tuning import cpu_budget, parse_count
    else:  # a checkout from before lite_align.tuning: its fixed settings
        cpu_budget = parse_count = None  # type: ignore[assignment]

    def load(d: Path) -> Any:
        (s,) = read_samples(d)
        return first_prompts(s, args.prompts)

    t_read = time.perf_counter()
    sampled = {d.name: load(d) for d in sorted(sampled_dir.iterdir()) if (d / "samples.jsonl").is_file()}
    greedy = {d.name: load(d) for d in sorted(greedy_dir.iterdir()) if (d / "samples.jsonl").is_file()}
    t_read = time.perf_counter() - t_read
    ref, greedy_ref = sampled["gpt-3.5-turbo"], greedy.get("gpt-3.5-turbo")
    sets = [*sampled.values(), *greedy.values()]
    responses = sum(s.n_responses for s in sets)
    distinct = len({t for s in sets for v in s.by_prompt.values() for t in v})
    print(
        f"{len(sampled)} sampled + {len(greedy)} greedy sets against gpt-3.5-turbo: {responses:,} responses, "
        f"{distinct:,} distinct texts (read in {t_read:.2f} s)"
    )
    print(f"lite_align from {Path(lite_align.__file__).parent}")
    if cpu_budget is not None and parse_count is not None:
        budget = cpu_budget()
        print(f"machine: {budget.usable} usable CPUs, {budget.physical} physical cores, quota {budget.quota}")
        embedder = OnnxEmbedder(embedder_spec(), threads=parse_count(args.threads, "--threads"))
    else:
        embedder = OnnxEmbedder(embedder_spec())
    wall, cpu = time.perf_counter(), time.process_time()
    results = recover_table(ref, sampled, embedder)
    if greedy_ref is not None:
        greedy_rows = recover_table(greedy_ref, greedy, embedder, baseline=ref, greedy_reference=greedy_ref)
        results.update({f"temp0/{k}": v for k, v in greedy_rows.items()})
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    st = embedder.stats
    print(f"encoder: {st.encoded:,} texts in {st.batches:,} model calls, onnxruntime threads {embedder.threads}")
    print(f"recover, cold: {wall:.1f} s wall, {cpu:.1f} s CPU ({st.encoded / wall:.0f} texts/s)")
    ratios = {k: round(v["bertscore"]["ratio"], 4) for k, v in results.items() if v["bertscore"]["ratio"] is not None}
    print(f"BERTScore-style F1 ratios: {ratios}")
    embedder.close()
    cache.cleanup()


if __name__ == "__main__":
    main()
