"""The `--json` documents (and the reports built beside them) as the CLI writes them, captured so
that a change of the code cannot change them unnoticed: the public contract, pinned.

    python tests/golden.py --write     # capture tests/data/golden/ with the code as it is now
    tests/test_golden.py               # produce every document again and compare

Every document is produced through the CLI in a fresh process, exactly as a user gets it, in a
fixed order, with one cache folder (``LITE_ALIGN_CACHE``) that starts empty and is shared in that
order: what a document finds cached (sentence vectors, judgements, calibrations) is the same each
time. (Sentence vectors came out the same warm and cold when this was written.)

What is compared:
- ``exact`` documents: the text itself, after the work folder, the release subset, the release (given
  to the CLI as ``golden-release-link``, a link in the work folder: see ``Places.LINK``), the
  project root and replay's temporary folder in it are replaced by ``<work>``, ``<subset>``,
  ``<release>``, ``<root>`` and ``<replay>``, and the values of the volatile keys (wall times, peak
  memory, judgements per second, the memory budget, dates, byte counts of files that hold timings)
  by ``"<volatile>"``. Which keys are volatile was found by producing every document twice.
- ``keys`` documents (speed measurements, estimates, what this machine has installed): the
  structure, every key in its order, and each leaf's type.
- reports in text (Markdown, terminal at 120 columns): the text, paths replaced as above and the
  lines with wall times or peak memory replaced by ``<volatile>``.

The release documents read the paper's release (``$LITE_ALIGN_PAPER_RELEASE``): the lexical figures
over all of ConflictingQA, the embedding figures over its first ``SUBSET`` prompts (a cold encoder
over the whole release takes minutes). The tiny-model documents come from the tiny generated GGUFs
(tests/tiny_gguf.py), generated on this kind of machine: another CPU's llama.cpp kernels can
sample other text from the same seeds, and then every tiny-run document differs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "data" / "golden"
CLI = [sys.executable, "-m", "lite_align.cli"]
SUBSET = 10  # prompts of the release subset the embedding documents read
VOLATILE = "<volatile>"
SIZE = frozenset({"size"})

# Keys whose values change from one production to the next (found by producing every document
# twice), wherever they occur in a document.
VOLATILE_KEYS = frozenset(
    {
        "timings",
        "engine_timings",
        "peak_rss_mb",
        "peak_rss_mb_by_phase",
        "created",
        "seconds",
        "archive_size",
        "total_s",
        "generation_s",
        "analysis_s",
        "explain_s",
        "judgements_per_second",
        "memory_budget_mb",
    }
)
# Lines of the text reports that carry wall times, peak memory or the judge's speed
VOLATILE_LINES = re.compile(
    r"^(.*(peak memory \d+ MB| s in all).*|\| (seconds|judgements_per_second) \|.*)$", re.MULTILINE
)
# replay unpacks into a fresh temporary folder unless told where
REPLAY_DIR = re.compile(re.escape(tempfile.gettempdir()) + r"/lite-align-replay-[A-Za-z0-9_]+")


@dataclass(frozen=True)
class Doc:
    name: str  # file name under tests/data/golden (its suffix says how it is compared)
    args: tuple[str, ...]
    mode: str  # "exact", "keys" or "text"
    needs_release: bool = False
    env: tuple[tuple[str, str], ...] = ()
    volatile: frozenset[str] = frozenset()  # keys volatile in this document only

    @property
    def file(self) -> Path:
        return GOLDEN / self.name


@dataclass
class Places:
    work: Path
    release: Path  # the real release (LITE_ALIGN_PAPER_RELEASE)

    # The CLI is given the release as a link in the work folder, by a relative name: a report shows
    # the path it was given, and a path as long as wherever the release sits on this machine would
    # change the width of the terminal report's panels (a path of fixed length keeps them as captured).
    LINK = "golden-release-link"

    @property
    def subset(self) -> Path:
        return self.work / "release-subset"

    def replace(self, text: str) -> str:
        pairs = [
            (str(self.work / self.LINK), "<release>"),
            (self.LINK, "<release>"),
            (str(self.subset), "<subset>"),
            (str(self.work), "<work>"),
            (str(self.release), "<release>"),
            (str(ROOT), "<root>"),
        ]
        text = REPLAY_DIR.sub("<replay>", text)
        for old, new in sorted(pairs, key=lambda p: -len(p[0])):
            text = text.replace(old, new)
        return text


def run_cli(places: Places, args: list[str], cache: Path, env: dict[str, str] | None = None) -> str:
    full_env = {
        **os.environ,
        "COLUMNS": "120",
        "LITE_ALIGN_CACHE": str(cache),
        "LITE_ALIGN_PAPER_RELEASE": places.LINK,
        **(env or {}),
    }
    res = subprocess.run([*CLI, *args], cwd=places.work, capture_output=True, text=True, timeout=900, env=full_env)
    if res.returncode != 0:
        raise AssertionError(f"lite-align {' '.join(args)} exited {res.returncode}:\n{res.stderr[-3000:]}")
    return res.stdout


def _volatile(doc: Any, keys: frozenset[str]) -> Any:
    if isinstance(doc, dict):
        return {k: VOLATILE if k in keys else _volatile(v, keys) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_volatile(v, keys) for v in doc]
    return doc


def _shape(doc: Any) -> Any:
    """Keys in order, leaves replaced by their type (numbers as one type: a speed may be 0 or 1.5)."""
    if isinstance(doc, dict):
        return {k: _shape(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_shape(v) for v in doc]
    if isinstance(doc, bool):
        return "bool"
    if isinstance(doc, (int, float)):
        return "number"
    if doc is None:
        return "null"
    return "str"


def dump(doc: Any) -> str:
    """As the CLI writes a document (report.print_json)."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def normalise(places: Places, doc: Doc, stdout: str) -> str:
    if doc.mode == "text":
        return VOLATILE_LINES.sub(VOLATILE, places.replace(stdout))
    parsed = json.loads(stdout)
    if dump(parsed) != stdout:  # the document is exactly json.dumps(indent=2) of itself: no other formatting
        raise AssertionError(f"{doc.name}: stdout is not one indented JSON document")
    parsed = json.loads(places.replace(stdout))
    return dump(_shape(parsed) if doc.mode == "keys" else _volatile(parsed, VOLATILE_KEYS | doc.volatile))


# --------------------------------------------------------------------------------------------------
# Inputs


def _copy_head(src: Path, dest: Path, lines: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with src.open(encoding="utf-8") as f:
        head = [next(f) for _ in range(lines)]
    dest.write_text("".join(head), encoding="utf-8")


def make_subset(release: Path, subset: Path) -> None:
    """The first SUBSET prompts of ConflictingQA's prompt set and of some released sets, laid out as
    the release is (so --release finds them when LITE_ALIGN_PAPER_RELEASE points here)."""
    src, dest = release / "ConflictingQA", subset / "ConflictingQA"
    _copy_head(src / "instances" / "data.jsonl", dest / "instances" / "data.jsonl", SUBSET)
    for folder, names in (
        ("outputs", ("gpt-3.5-turbo", "llama-2-base", "llama-2-icl-gpt-3.5-rand")),
        ("outputs-temp0", ("gpt-3.5-turbo", "llama-2-base")),
    ):
        for name in names:
            _copy_head(src / folder / name / "samples.jsonl", dest / folder / name / "samples.jsonl", SUBSET)
            shutil.copy(src / folder / name / "args.json", dest / folder / name / "args.json")


def make_tiny(work: Path) -> tuple[Path, Path]:
    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_gguf import write_tiny_llama

    models = work / "models"
    models.mkdir(parents=True, exist_ok=True)
    # the seeds of tests/conftest.py
    return (
        write_tiny_llama(models / "tiny-base.gguf", chat=False, seed=0),
        write_tiny_llama(models / "tiny-chat.gguf", chat=True, seed=1),
    )


REGISTRY = """\
version = 1
default_pair = "tiny"

[models.tiny-base]
role = "base"
family = "tiny"
path = "{base}"
license = "MIT"
note = "a tiny random-weight llama"

[models.tiny-chat]
role = "chat"
family = "tiny"
path = "{chat}"
chat_template = true
license = "MIT"

[models.served]
role = "chat"
backend = "openai"
base_url = "http://127.0.0.1:9/v1"
model = "served-chat"
concurrency = 2

[pairs.tiny]
base = "tiny-base"
chat = "tiny-chat"
note = "two tiny random-weight models"
"""


# --------------------------------------------------------------------------------------------------
# The documents, in the order they are produced (later ones read earlier ones' run directories)


def documents(places: Places) -> list[Doc]:
    w = places.work
    sub = "ConflictingQA"
    tiny = ("--base", "models/tiny-base.gguf", "--chat", "models/tiny-chat.gguf", "--threads", "1", "--batch", "8")
    run_a = (*tiny, "--out", "runs/a", "--limit", "3", "--samples", "3", "--max-tokens", "12")
    run_b = (*tiny, "--out", "runs/b", "--limit", "4", "--samples", "3", "--max-tokens", "10", "--seed", "1")
    run_b += ("--conditions", "base,icl-static,icl-knn-greedy")
    run_c = (*tiny, "--out", "runs/c", "--limit", "2", "--samples", "2", "--max-tokens", "8", "--conditions", "base")
    run_c += ("--judge", "models/tiny-chat.gguf")
    subset_env = (("LITE_ALIGN_PAPER_RELEASE", str(places.subset)),)
    rel = {"needs_release": True}
    out = [
        # the paper's release, lexical, all of ConflictingQA
        Doc("release-diversity.json", ("diversity", "--release", sub, "--json"), "exact", **rel),
        Doc(
            "release-recover-lexical.json",
            ("recover", "--release", sub, "--reference", "gpt-3.5-turbo", "--lexical-only", "--json"),
            "exact",
            **rel,
        ),
        Doc(
            "release-recover-greedy-lexical.json",
            ("recover", "--release", f"{sub}/outputs-temp0", "--reference", "gpt-3.5-turbo")
            + ("--baseline", "outputs/gpt-3.5-turbo", "--lexical-only", "--json"),
            "exact",
            **rel,
        ),
        Doc("release-stance.json", ("stance", "--release", sub, "--json"), "exact", **rel),
        Doc(
            "release-report.json",
            ("report", "--release", sub, "--reference", "gpt-3.5-turbo", "--format", "json"),
            "exact",
            **rel,
        ),
        Doc(
            "release-report.md",
            ("report", "--release", sub, "--reference", "gpt-3.5-turbo", "--format", "markdown"),
            "text",
            **rel,
        ),
        Doc("release-report.txt", ("report", "--release", sub, "--reference", "gpt-3.5-turbo"), "text", **rel),
        Doc(
            "release-greedy-report.json",
            ("report", "--release", f"{sub}/outputs-temp0", "--reference", "gpt-3.5-turbo")
            + ("--baseline", "outputs/gpt-3.5-turbo", "--format", "json"),
            "exact",
            **rel,
        ),
        Doc("release-path.json", ("release", "path", "--json"), "exact", **rel),
        # the release's first SUBSET prompts, with the sentence encoder
        Doc(
            "subset-recover.json",
            ("recover", "--release", sub, "--reference", "gpt-3.5-turbo", "--json"),
            "exact",
            env=subset_env,
            **rel,
        ),
        Doc(
            "subset-recover-greedy.json",
            ("recover", "--release", f"{sub}/outputs-temp0", "--reference", "gpt-3.5-turbo")
            + ("--baseline", "outputs/gpt-3.5-turbo", "--json"),
            "exact",
            env=subset_env,
            **rel,
        ),
        Doc(
            "subset-explain.json",
            ("explain", "--release", sub, "--base", "llama-2-base", "--aligned", "gpt-3.5-turbo", "--json"),
            "exact",
            env=subset_env,
            **rel,
        ),
        Doc(
            "subset-report.json",
            ("report", "--release", sub, "--reference", "gpt-3.5-turbo", "--embeddings", "--format", "json"),
            "exact",
            env=subset_env,
            **rel,
        ),
        Doc(
            "subset-pack.json",
            ("pack", "--release", sub, "--reference", "gpt-3.5-turbo", "--embeddings", "--out", "subset.zip", "--json"),
            "exact",
            volatile=SIZE,
            env=subset_env,
            **rel,
        ),
        Doc("subset-replay.json", ("replay", "subset.zip", "--json"), "exact", **rel),
        Doc("subset-replay-lexical.json", ("replay", "subset.zip", "--lexical-only", "--json"), "exact", **rel),
        # tiny generated GGUFs
        Doc("tiny-plan.json", ("run", *run_a, "--dry-run", "--json"), "keys"),
        Doc("tiny-run.json", ("run", *run_a, "--json"), "exact"),
        Doc("tiny-run-again.json", ("run", *run_a, "--json"), "exact"),  # resumed: nothing generated
        Doc("tiny-run-b.json", ("run", *run_b, "--json"), "exact"),
        Doc("tiny-run-judged.json", ("run", *run_c, "--json"), "exact"),
        Doc("tiny-report.json", ("report", "runs/a", "--format", "json"), "exact"),
        Doc("tiny-report.md", ("report", "runs/a", "--format", "markdown"), "text"),
        Doc("tiny-report.txt", ("report", "runs/a"), "text"),
        Doc("tiny-report-judged.json", ("report", "runs/c", "--json"), "exact"),
        Doc("tiny-report-judged.md", ("report", "runs/c", "--format", "markdown"), "text"),
        Doc("tiny-compare.json", ("compare", "runs/a", "runs/b", "--json"), "exact"),
        Doc("tiny-compare.txt", ("compare", "runs/a", "runs/b"), "text"),
        Doc("tiny-diversity.json", ("diversity", "runs/a", "--embeddings", "--json"), "exact"),
        Doc("tiny-recover.json", ("recover", "--reference", "runs/a/samples/chat.jsonl", "runs/b", "--json"), "exact"),
        Doc("tiny-explain.json", ("explain", "--base", "runs/a#base", "--aligned", "runs/a#chat", "--json"), "exact"),
        Doc(
            "tiny-explain-judged.json",
            ("explain", "--base", "runs/a#base", "--aligned", "runs/a#chat", "--judge", "models/tiny-chat.gguf")
            + ("--json",),
            "exact",
        ),
        # the size of the packed files: the manifests' timings have as many digits as they happen to
        Doc("tiny-pack.json", ("pack", "runs/a", "runs/c", "--out", "tiny.zip", "--json"), "exact", volatile=SIZE),
        Doc("tiny-replay.json", ("replay", "tiny.zip", "--json"), "exact"),
        Doc("tiny-replay-lexical.json", ("replay", "tiny.zip", "--lexical-only", "--json"), "exact"),
        Doc("tiny-replay.md", ("replay", "tiny.zip", "--format", "markdown"), "text"),
        Doc("tiny-models.json", ("models", "--registry", "models.toml", "--json"), "exact"),
        Doc("project-models.json", ("models", "--json"), "keys"),
        Doc("project-embedders.json", ("embedders", "list", "--json"), "keys"),
        Doc(
            "tiny-bench.json",
            ("bench", "--model", "models/tiny-base.gguf", "--prompts", "1", "--samples", "2", "--max-tokens", "4")
            + ("--threads", "1", "--batch", "2", "--conditions", "zero-shot", "--json"),
            "keys",
        ),
        Doc(
            "tiny-sweep.json",
            ("bench", "--sweep", "--model", "models/tiny-base.gguf", "--prompts", "1", "--samples", "2")
            + ("--max-tokens", "4", "--threads", "1", "--batch", "2", "--gpu-layers", "0", "--conditions", "zero-shot")
            + ("--json",),
            "keys",
        ),
        Doc("tiny-judge-check.json", ("judge", "check", "--judge", "models/tiny-chat.gguf", "--json"), "exact"),
    ]
    del w
    return out


def prepare(places: Places) -> None:
    places.work.mkdir(parents=True, exist_ok=True)
    base, chat = make_tiny(places.work)
    (places.work / "models.toml").write_text(REGISTRY.format(base=base, chat=chat), encoding="utf-8")
    if (places.release / "ConflictingQA" / "outputs").is_dir():
        make_subset(places.release, places.subset)
        link = places.work / places.LINK
        link.unlink(missing_ok=True)
        link.symlink_to(places.release, target_is_directory=True)


times: dict[str, float] = {}  # seconds each document took, last production


def produce(places: Places, *, only: Callable[[Doc], bool] = lambda d: True) -> Iterator[tuple[Doc, str]]:
    """Every document, normalised, in order."""
    prepare(places)
    for doc in documents(places):
        if not only(doc):
            continue
        cache = places.work / "cache"
        t0 = time.perf_counter()
        stdout = run_cli(places, list(doc.args), cache, dict(doc.env))
        times[doc.name] = time.perf_counter() - t0
        yield doc, normalise(places, doc, stdout)


def main() -> None:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="write tests/data/golden/ (else compare with it)")
    parser.add_argument("--out", help="write the documents here instead")
    args = parser.parse_args()
    release = Path(os.environ.get("LITE_ALIGN_PAPER_RELEASE", "")).expanduser()
    if not (release / "ConflictingQA" / "outputs").is_dir():
        raise SystemExit("set LITE_ALIGN_PAPER_RELEASE to the paper's release")
    target = Path(args.out) if args.out else GOLDEN
    with tempfile.TemporaryDirectory(prefix="lite-align-golden-") as tmp:
        places = Places(Path(tmp).resolve(), release.resolve())
        differ = []
        for doc, text in produce(places):
            if args.write or args.out:
                target.mkdir(parents=True, exist_ok=True)
                (target / doc.name).write_text(text, encoding="utf-8")
                print(f"wrote {doc.name} ({len(text)} chars, {times[doc.name]:.1f} s)", flush=True)
            elif not doc.file.is_file() or doc.file.read_text(encoding="utf-8") != text:
                differ.append(doc.name)
                print(f"DIFFERS {doc.name}", flush=True)
            else:
                print(f"same {doc.name}", flush=True)
        if differ:
            raise SystemExit(f"{len(differ)} documents differ: {', '.join(differ)}")


if __name__ == "__main__":
    main()
