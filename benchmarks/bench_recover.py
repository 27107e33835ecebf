"""Time `lite-align recover` of released outputs against a reference, cold, as a user runs it.

    python benchmarks/bench_recover.py [--release DIR] [--dataset LIMA-OE] [--reference NAME]
                                       [--sets NAME ...] [--code DIR] [--json]

The workload the targets name: LIMA-OE's 50 prompts × 5 samples × 11 sets (2,750 long answers),
gpt-3.5-turbo against ten candidates, with the three similarities (word-bag Jaccard, embedding
cosine, BERTScore-style F1 from token vectors). It runs the CLI in a fresh process:

    lite-align recover --json --reference DIR/outputs/REFERENCE DIR/outputs/SET ...

"Cold": LITE_ALIGN_CACHE points at a new empty folder, so no sentence vector is cached and
onnxruntime's thread count is calibrated afresh (that time is included). It prints the wall time,
the CPU time and the peak memory of that process, and the BERTScore-style ratios (to check that two
versions agree).

``--release DIR`` is the release root (holding LIMA-OE/ or ConflictingQA/): default
``$LITE_ALIGN_PAPER_RELEASE``, else where ``lite-align release fetch`` put it (``lite-align release
path``). LIMA-OE is in the full release only (``lite-align release fetch``); the shared subset holds
ConflictingQA (``--dataset ConflictingQA`` times its 21 sets). ``--code DIR`` times the lite_align
package of another checkout (``git worktree add /tmp/before COMMIT``) for a before/after on the same
machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIMA_SETS = [
    "llama-2-base",
    "llama-2-chat",
    "mistral",
    "mistral-instruct",
    "zephyr",
    "mistral-sft",
    "llama-2-icl-gpt-3.5-rand",
    "llama-2-icl-gpt-3.5-knn-prompt_similar",
    "llama-2-icl-gpt-3.5-summary",
    "mistral-icl-gpt-3.5-rand",
]


def release_root(code: Path) -> Path:
    env = os.environ.get("LITE_ALIGN_PAPER_RELEASE")
    if env:
        return Path(env)
    out = subprocess.run(
        [sys.executable, "-m", "lite_align.cli", "release", "path"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(code)},
    )
    if out.returncode != 0:
        sys.exit(out.stderr.strip() or "error: no release; run `lite-align release fetch` or pass --release")
    return Path(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--release", type=Path, default=None, help="the release root (default: as the CLI finds it)")
    parser.add_argument("--dataset", default="LIMA-OE")
    parser.add_argument("--reference", default="gpt-3.5-turbo")
    parser.add_argument("--sets", nargs="*", default=None, help="candidate sets (default: LIMA-OE's ten, or all)")
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose lite_align is timed")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    args = parser.parse_args()
    code = args.code.resolve()
    root = (args.release or release_root(code)) / args.dataset / "outputs"
    if not (root / args.reference / "samples.jsonl").is_file():
        sys.exit(f"error: no {args.reference}/samples.jsonl under {root}; pass --release or --dataset")
    names = args.sets
    if names is None:
        names = (
            LIMA_SETS
            if args.dataset == "LIMA-OE"
            else sorted(d.name for d in root.iterdir() if (d / "samples.jsonl").is_file() and d.name != args.reference)
        )
    with tempfile.TemporaryDirectory(prefix="lite_align-bench-recover-") as cache:
        env = {**os.environ, "PYTHONPATH": str(code), "LITE_ALIGN_CACHE": cache}
        cmd = [sys.executable, "-m", "lite_align.cli", "recover", "--json", "--reference", str(root / args.reference)]
        cmd += [str(root / n) for n in names]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - wall
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        sys.exit(f"error: recover failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    doc = json.loads(out.stdout)  # {candidate path: {similarity: {..., "ratio": r}, ...}}
    ratios = {
        Path(path).name: round(row["bertscore"]["ratio"], 4)
        for path, row in doc.items()
        if isinstance(row.get("bertscore"), dict) and row["bertscore"].get("ratio") is not None
    }
    figures = {
        "dataset": args.dataset,
        "reference": args.reference,
        "sets": len(names) + 1,
        "code": str(code),
        "wall_s": round(wall, 1),
        "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
        "peak_rss_mb": round(after.ru_maxrss / 1024),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "bertscore_ratios": ratios,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"{args.dataset}: {args.reference} against {len(names)} sets, cold, lite_align from {code}")
    print(
        f"recover: {figures['wall_s']} s wall, {figures['cpu_s']} s CPU, peak {figures['peak_rss_mb']} MB "
        f"(1-min load at the end {figures['load_average_1min']})"
    )
    if ratios:
        print(f"BERTScore-style F1 ratios: {ratios}")


if __name__ == "__main__":
    main()
