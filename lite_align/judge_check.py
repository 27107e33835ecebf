"""How far to trust a judge: its agreement with the answers a careful reader gives on a calibration
set of our own (``prompts/judge/calibration.jsonl``), and with the paper's GPT-4 stance labels on the
ConflictingQA release (``eval-stance``).

    doc = calibration_check(judge, load_calibration())          # plain dict, JSON-ready
    doc = release_check(judge, release_dir, limit=20)

What is compared, per task (the same bars the explain section uses):

- quality: pass or fail of the quality bar, helpfulness >= 3 (the judge's helpfulness score against
  the one the calibration item expects); the mean absolute difference of the scores is given too;
- stance: yes / no / both / other;
- coverage: "covers" (missing_from_a <= 2) or "misses" (>= 3).

A reply that does not parse is a wrong label ("unparsed"), never dropped. Figures: accuracy and
Cohen's kappa (agreement beyond what the two label distributions give by chance: 1 perfect, 0
chance, below 0 worse than chance), each with a 95% percentile bootstrap interval over the items
(over the prompts for the release, whose five answers per prompt are not independent), the
confusion counts, and a reading of kappa on the usual scale (slight < 0.2 <= fair < 0.4 <= moderate
< 0.6 <= substantial < 0.8 <= almost perfect; below 0, poor: no better than chance).

The calibration file's first line is a header ``{"format": ..., "version": N}``; each further line
is one item with ``id``, ``task``, ``kind``, the fields of the task's prompt, and ``expected``.
Results are cached as JSON in ``<cache>/judge/agreement/`` by (judge sha256, calibration version and
content hash, judge prompt versions) — and for the release also the subset — so a report that shows
the agreement costs nothing the second time; the judgements themselves sit in the judge's cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, PromptFileError, SamplesFileError
from .explain import HELPFUL_BAR  # the quality bar the explain section applies: checked here as it is used
from .loaders import open_judge
from .metrics.stance import STANCES, stance_summary
from .paths import cache_dir, prompts_dir
from .readers import read_instances, read_samples, read_stance_labels
from .registry import load_registry
from .release import release_root, verify_release

CALIBRATION_FORMAT = "lite_align-judge-calibration"
CHECK_VERSION = 1  # of the figures computed here; part of the cache key: bump it when they change
COVERS_AT_MOST = 2
BOOTSTRAP = 2000
RELEASE_SETS = ("llama-2-base", "gpt-3.5-turbo")
RELEASE_LIMIT = 20
RELEASE_SEED = 0
_FIELDS = {
    "quality": ("question", "answer"),
    "stance": ("question", "answer"),
    "coverage": ("question", "answer_a", "answer_b"),
}
_EXPECTED = {"quality": "helpfulness", "stance": "stance", "coverage": "missing_from_a"}
LABELS = {
    "quality": f"pass / fail of the quality bar (helpfulness >= {HELPFUL_BAR})",
    "stance": "yes / no / both / other",
    "coverage": f"covers (missing_from_a <= {COVERS_AT_MOST}) / misses",
}


@dataclass(frozen=True)
class CalibrationItem:
    id: str
    task: str
    kind: str
    fields: dict[str, str]
    expected: Any


@dataclass(frozen=True)
class Calibration:
    version: str
    sha256: str
    source: str
    items: tuple[CalibrationItem, ...]


def default_calibration_path() -> Path:

    return prompts_dir() / "judge" / "calibration.jsonl"


def load_calibration(path: str | Path | None = None) -> Calibration:
    """The calibration set, checked line by line (one-line PromptFileError naming the line)."""
    p = Path(path) if path is not None else default_calibration_path()
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise PromptFileError(
            f"{p}: cannot be read ({exc.strerror}); restore it from the lite_align checkout"
        ) from None
    lines = raw.decode("utf-8", errors="replace").splitlines()
    try:
        header = json.loads(lines[0]) if lines else None
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != CALIBRATION_FORMAT or "version" not in header:
        raise PromptFileError(f'{p}:1: the first line must be {{"format": "{CALIBRATION_FORMAT}", "version": N}}')
    items = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptFileError(f"{p}:{number}: not JSON ({exc.msg}); fix that line") from None
        task = obj.get("task") if isinstance(obj, dict) else None
        if task not in _FIELDS:
            raise PromptFileError(f"{p}:{number}: task must be one of {', '.join(_FIELDS)}")
        fields = {k: obj.get(k) for k in _FIELDS[task]}
        expected = (obj.get("expected") or {}).get(_EXPECTED[task])
        ok_expected = expected in ("yes", "no", "both", "other") if task == "stance" else expected in range(1, 6)
        if not all(isinstance(v, str) for v in fields.values()) or not ok_expected or not obj.get("id"):
            raise PromptFileError(
                f"{p}:{number}: a {task} item needs id, {', '.join(_FIELDS[task])} (text) and "
                f"expected.{_EXPECTED[task]}"
            )
        items.append(CalibrationItem(str(obj["id"]), task, str(obj.get("kind", "")), fields, expected))
    if not items:
        raise PromptFileError(f"{p}: no calibration items after the header")
    return Calibration(str(header["version"]), hashlib.sha256(raw).hexdigest(), str(p), tuple(items))


# ---------------------------------------------------------------------------------------------
# Agreement statistics


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two labelings of the same items; None when chance agreement is total.

    >>> cohen_kappa(["y", "y", "n", "n"], ["y", "y", "n", "n"])
    1.0
    >>> cohen_kappa(["y", "y", "n", "n"], ["y", "n", "y", "n"])
    0.0
    >>> round(cohen_kappa(["y", "y", "y", "n"], ["y", "y", "n", "n"]), 3)
    0.5
    """
    n = len(a)
    if n == 0 or n != len(b):
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    chance = sum(ca[c] * cb[c] for c in ca) / (n * n)
    return None if chance >= 1.0 else (observed - chance) / (1.0 - chance)


def accuracy(a: Sequence[str], b: Sequence[str]) -> float | None:
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a) if a else None


def _interval(
    stat: Callable[[Sequence[str], Sequence[str]], float | None],
    expected: Sequence[str],
    judged: Sequence[str],
    clusters: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The statistic and its 95% percentile bootstrap interval (resampling clusters when given)."""
    value = stat(expected, judged)
    groups: dict[int, list[int]] = {}
    for i, c in enumerate(clusters if clusters is not None else range(len(expected))):
        groups.setdefault(c, []).append(i)
    keys = list(groups)
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(BOOTSTRAP):
        idx = [i for k in rng.integers(0, len(keys), len(keys)) for i in groups[keys[k]]]
        v = stat([expected[i] for i in idx], [judged[i] for i in idx])
        if v is not None:
            draws.append(v)
    ci = [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))] if len(draws) >= BOOTSTRAP // 2 else None
    return {"mean": value, "ci": ci, "n": len(expected)}


def reading(kappa: float | None) -> str:
    """Kappa in words (Landis and Koch's scale)."""
    if kappa is None:
        return "undefined"
    for bound, word in (
        (0.0, "poor"),
        (0.2, "slight"),
        (0.4, "fair"),
        (0.6, "moderate"),
        (0.8, "substantial"),
    ):
        if kappa < bound:
            return word
    return "almost perfect"


def agreement(expected: Sequence[str], judged: Sequence[str], clusters: Sequence[int] | None = None) -> dict[str, Any]:
    kappa = _interval(cohen_kappa, expected, judged, clusters)
    same = len(set(judged)) == 1 and len(set(expected)) > 1
    # a judge that gives every item the same label agrees only by chance, whatever its accuracy
    confusion: dict[str, dict[str, int]] = {}
    for e, j in zip(expected, judged, strict=True):
        confusion.setdefault(e, {}).setdefault(j, 0)
        confusion[e][j] += 1
    return {
        "n": len(expected),
        "n_unparsed": sum(j == "unparsed" for j in judged),
        "accuracy": _interval(accuracy, expected, judged, clusters),
        "kappa": kappa,
        "reading": f"chance: '{judged[0]}' for every item" if same else reading(kappa["mean"]),
        "confusion": confusion,
    }


# ---------------------------------------------------------------------------------------------
# Asking the judge


def _label(task: str, value: Any) -> str:
    if value is None:
        return "unparsed"
    if task == "quality":
        return "pass" if value.helpfulness >= HELPFUL_BAR else "fail"
    if task == "coverage":
        return "covers" if value.missing_from_a <= COVERS_AT_MOST else "misses"
    return str(value.stance)


def _expected_label(item: CalibrationItem) -> str:
    if item.task == "quality":
        return "pass" if item.expected >= HELPFUL_BAR else "fail"
    if item.task == "coverage":
        return "covers" if item.expected <= COVERS_AT_MOST else "misses"
    return str(item.expected)


def _score(task: str, value: Any) -> int | None:
    if value is None or task == "stance":
        return None
    return int(value.helpfulness if task == "quality" else value.missing_from_a)


def _ask(judge: Any, task: str, rows: Sequence[Sequence[str]], progress: Any, chunk: int = 8) -> list[Any]:
    """The judge's verdicts for ``rows`` (tuples in the order of the task's prompt fields), asked a
    few at a time so a progress bar can move."""
    method = {"quality": judge.quality, "stance": judge.stance, "coverage": judge.compare}[task]
    out: list[Any] = []
    for start in range(0, len(rows), chunk):
        out += method([tuple(r) for r in rows[start : start + chunk]])
        if progress is not None:
            progress.advance(min(chunk, len(rows) - start))
    return out


def judge_identity(judge: Any) -> dict[str, Any]:
    d = judge.describe()
    return {
        "model": d.get("model"),
        "sha256": d.get("sha256"),
        "file": d.get("file"),
        "prompt_versions": d.get("prompt_versions"),
    }


def calibration_check(
    judge: Any, calibration: Calibration, *, progress: Any = None, use_cache: bool = True
) -> dict[str, Any]:
    """The judge's agreement with the calibration set, per task (see the module docstring)."""
    ident = judge_identity(judge)
    key = _key("calibration", ident, calibration.version, calibration.sha256)
    if use_cache and (hit := _cache_get(key)) is not None:
        return {**hit, "cached": True}
    start = time.perf_counter()
    if progress is not None:
        progress.start(f"judging {len(calibration.items)} calibration items", len(calibration.items))
    tasks: dict[str, Any] = {}
    try:
        for task in _FIELDS:
            items = [it for it in calibration.items if it.task == task]
            if not items:
                continue
            verdicts = _ask(judge, task, [[it.fields[k] for k in _FIELDS[task]] for it in items], progress)
            expected = [_expected_label(it) for it in items]
            judged = [_label(task, v.value) for v in verdicts]
            doc = {"labels": LABELS[task], **agreement(expected, judged)}
            by_kind: dict[str, dict[str, Any]] = {}
            for it, e, j, v in zip(items, expected, judged, verdicts, strict=True):
                k = by_kind.setdefault(it.kind, {"n": 0, "correct": 0, "scores": []})
                k["n"] += 1
                k["correct"] += e == j
                if (s := _score(task, v.value)) is not None:
                    k["scores"].append(s)
            for k in by_kind.values():
                scores = k.pop("scores")
                k["mean_score"] = float(np.mean(scores)) if scores else None
            doc["by_kind"] = by_kind
            if task != "stance":
                pairs = [(_score(task, v.value), it.expected) for it, v in zip(items, verdicts, strict=True)]
                diffs = [abs(s - x) for s, x in pairs if s is not None]
                doc["score_mean_abs_error"] = float(np.mean(diffs)) if diffs else None
            doc["items"] = {it.id: j for it, j in zip(items, judged, strict=True)}
            tasks[task] = doc
    finally:
        if progress is not None:
            progress.finish()
    out = {
        "judge": ident,
        "calibration": {"version": calibration.version, "sha256": calibration.sha256, "source": calibration.source,
                        "n_items": len(calibration.items)},
        "tasks": tasks,
        "summary": summary_line(ident.get("model"), calibration.version, len(calibration.items), tasks),
        "seconds": round(time.perf_counter() - start, 2),
    }  # fmt: skip
    if use_cache:
        _cache_put(key, out)
    return {**out, "cached": False}


def summary_line(model: Any, version: str, n_items: int, tasks: Mapping[str, Any]) -> str:
    """One line a report header carries: kappa per task with its interval."""

    def fig(t: Mapping[str, Any]) -> str:
        k = t["kappa"]
        if k["mean"] is None:
            return "kappa undefined"
        ci = f" [{k['ci'][0]:.2f}, {k['ci'][1]:.2f}]" if k.get("ci") else ""
        return f"kappa {k['mean']:.2f}{ci} ({t['reading']}), accuracy {t['accuracy']['mean']:.0%}"

    parts = "; ".join(f"{name} {fig(t)}" for name, t in tasks.items())
    return f"judge {model} against the calibration set (v{version}, {n_items} items): {parts}"


# ---------------------------------------------------------------------------------------------
# Against the paper's GPT-4 stance labels


def find_release(path: str | Path | None) -> Path:
    """The ConflictingQA folder of the paper's release: ``path`` (the release or its ConflictingQA
    folder), else where the other commands read it (``$LITE_ALIGN_PAPER_RELEASE``, else where
    ``lite-align release fetch`` put it, its files checked against their sha256)."""
    root = Path(path).expanduser() if path else release_root()
    for candidate in (root, root / "ConflictingQA"):
        if all((candidate / "eval-stance" / s / "samples.jsonl").is_file() for s in RELEASE_SETS):
            if not path:
                verify_release(root, under=("ConflictingQA/eval-stance",))
            return candidate
    if not path:
        raise ConfigError(
            "--against-release needs the paper's release: pass --release PATH (the folder holding ConflictingQA/), "
            "set LITE_ALIGN_PAPER_RELEASE, or run `lite-align release fetch`"
        )
    raise ConfigError(
        f"{root} does not hold ConflictingQA/eval-stance/{{{','.join(RELEASE_SETS)}}}/samples.jsonl; give the "
        "release folder with --release"
    )


def release_subset(n_prompts: int, limit: int | None, seed: int = RELEASE_SEED) -> list[int]:
    """The prompt ids judged: ``limit`` of them drawn with a fixed seed (all when limit is None),
    in id order.

    >>> release_subset(10, 3) == release_subset(10, 3) and len(release_subset(10, 3)) == 3
    True
    """
    if limit is None or limit >= n_prompts:
        return list(range(n_prompts))
    if limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit}")
    return sorted(int(i) for i in np.random.default_rng(seed).permutation(n_prompts)[:limit])


def release_check(
    judge: Any, release: Path, *, limit: int | None = RELEASE_LIMIT, progress: Any = None, use_cache: bool = True
) -> dict[str, Any]:
    """The judge's stance labels on the released llama-2-base and gpt-3.5-turbo answers against the
    paper's GPT-4 labels (eval-stance), on ``limit`` prompts drawn with a fixed seed."""
    questions = {q.id: q.text for q in read_instances(release / "instances" / "data.jsonl").prompts}
    ids = release_subset(len(questions), limit)
    label_files = [release / "eval-stance" / s / "samples.jsonl" for s in RELEASE_SETS]
    ident = judge_identity(judge)
    files_sha = hashlib.sha256(b"".join(p.read_bytes() for p in label_files)).hexdigest()
    key = _key("release", ident, f"{RELEASE_SEED}:{','.join(map(str, ids))}", files_sha)
    if use_cache and (hit := _cache_get(key)) is not None:
        return {**hit, "cached": True}
    per = 5
    rows: list[tuple[str, int, str, str, str | None]] = []  # (set, prompt id, question, answer, GPT-4 label)
    for name, labels_path in zip(RELEASE_SETS, label_files, strict=True):
        answers = read_samples(release / "outputs" / name)[0]
        gpt4 = read_stance_labels(labels_path)
        if len(gpt4) != per * len(questions) or any(len(answers.by_prompt.get(i, ())) != per for i in ids):
            raise SamplesFileError(f"{labels_path}: expected {per} labels and answers per prompt of {len(questions)}")
        for pid in ids:
            for j in range(per):
                g = gpt4[pid * per + j]
                rows.append(
                    (
                        name,
                        pid,
                        questions[pid],
                        answers.by_prompt[pid][j],
                        None if g is None else (g if g in STANCES else "other"),
                    )
                )
    start = time.perf_counter()
    if progress is not None:
        progress.start(f"judging the stance of {len(rows)} released answers", len(rows))
    try:
        verdicts = _ask(judge, "stance", [(q, a) for _, _, q, a, _ in rows], progress)
    finally:
        if progress is not None:
            progress.finish()
    judged = [_label("stance", v.value) for v in verdicts]
    kept = [i for i, r in enumerate(rows) if r[4] is not None]

    def block(idx: list[int]) -> dict[str, Any]:
        return agreement([str(rows[i][4]) for i in idx], [judged[i] for i in idx], [rows[i][1] for i in idx])

    per_set = {}
    for name in RELEASE_SETS:
        idx = [i for i in kept if rows[i][0] == name]
        mine = [judged[i] if judged[i] != "unparsed" else None for i, r in enumerate(rows) if r[0] == name]
        theirs = [r[4] for r in rows if r[0] == name]
        shares = {
            who: {
                k: v
                for k, v in stance_summary(labels, per).to_json().items()
                if k in (*STANCES, "prompts_with_yes_and_no", "prompts_with_both")
            }
            for who, labels in (("judge", mine), ("gpt4", theirs))
        }
        per_set[name] = {**block(idx), "shares": shares}
    tasks = {"stance": {"labels": LABELS["stance"], **block(kept)}}
    out = {
        "judge": ident,
        "reference": "the paper's GPT-4 stance labels (ConflictingQA eval-stance, gpt-4-1106-preview)",
        "release": {"path": str(release), "sets": list(RELEASE_SETS), "prompts": len(ids), "of_prompts": len(questions),
                    "responses": len(rows), "seed": RELEASE_SEED, "prompt_ids": ids,
                    "subset": f"{len(ids)} of {len(questions)} prompts drawn with seed {RELEASE_SEED}"
                    if len(ids) < len(questions) else f"all {len(questions)} prompts",
                    "gpt4_unparsed": len(rows) - len(kept)},
        "tasks": tasks,
        "per_set": per_set,
        "summary": f"judge {ident.get('model')} against GPT-4's stance labels on {len(ids)} of {len(questions)} "
                   f"ConflictingQA prompts ({len(rows)} answers): stance kappa {_fmt(tasks['stance']['kappa'])} "
                   f"({tasks['stance']['reading']}), accuracy {tasks['stance']['accuracy']['mean']:.0%}",
        "seconds": round(time.perf_counter() - start, 2),
    }  # fmt: skip
    if use_cache:
        _cache_put(key, out)
    return {**out, "cached": False}


def _fmt(k: Mapping[str, Any]) -> str:
    if k.get("mean") is None:
        return "undefined"
    ci = f" [{k['ci'][0]:.2f}, {k['ci'][1]:.2f}]" if k.get("ci") else ""
    return f"{k['mean']:.2f}{ci}"


# ---------------------------------------------------------------------------------------------
# The cache, and what reports carry


def _key(kind: str, ident: Mapping[str, Any], version: str, content_sha: str) -> str:
    material = json.dumps(
        [CHECK_VERSION, kind, ident.get("sha256"), ident.get("prompt_versions"), version, content_sha], sort_keys=True
    )
    return hashlib.sha256(material.encode()).hexdigest()


def _cache_dir() -> Path:

    return cache_dir() / "judge" / "agreement"


def _cache_get(key: str) -> dict[str, Any] | None:
    try:
        doc = json.loads((_cache_dir() / f"{key}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and "tasks" in doc else None


def _cache_put(key: str, doc: Mapping[str, Any]) -> None:
    """Best effort: an agreement that cannot be cached is simply measured again next time."""
    path = _cache_dir() / f"{key}.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def with_agreement(result: dict[str, Any], judge: Any, *, progress: Any = None) -> dict[str, Any]:
    """An explain result with the judge's calibration agreement: the one-line summary first (the
    head of every report of the section) and the figures under ``judge.agreement``."""
    if judge is None or not isinstance(result.get("judge"), dict):
        return result
    check = calibration_check(judge, load_calibration(), progress=progress)
    brief = {task: {"kappa": t["kappa"], "accuracy": t["accuracy"], "reading": t["reading"], "n": t["n"]}
             for task, t in check["tasks"].items()}  # fmt: skip
    result["judge"]["agreement"] = {"calibration": check["calibration"], "tasks": brief, "summary": check["summary"]}
    return {"judge_agreement": check["summary"] + " (details: lite-align judge check)", **result}


__all__ = [
    "Calibration",
    "CalibrationItem",
    "accuracy",
    "agreement",
    "calibration_check",
    "check_judge",
    "cohen_kappa",
    "find_release",
    "load_calibration",
    "reading",
    "release_check",
    "release_subset",
    "with_agreement",
]


def check_judge(
    model: str | None,
    registry: str | None,
    *,
    calibration: str | None = None,
    against_release: bool = False,
    release: str | None = None,
    limit: int | None = RELEASE_LIMIT,
    threads: int | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """`lite-align judge check`: open the judge (default: the default pair's chat model, the
    embedded judge), measure it on the calibration set and, when asked, against the release."""
    cal = load_calibration(calibration)
    folder = find_release(release) if against_release else None  # a missing release fails before loading
    if model is None:
        reg = load_registry(registry)
        model = reg.pair(reg.default_pair).chat
    judge = open_judge(model, registry, threads=threads)
    try:
        doc: dict[str, Any] = {"calibration": calibration_check(judge, cal, progress=progress)}
        if folder is not None:
            doc["release"] = release_check(judge, folder, limit=limit, progress=progress)
        return doc
    finally:
        judge.generator.close()
        judge.close()
