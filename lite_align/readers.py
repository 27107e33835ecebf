"""Read samples and prompt sets from disk; the format is detected, never configured.

Samples come in three shapes (see docs/method.md §2 and ``Sample.to_json``):

- the paper's release: ``samples.jsonl`` (or a directory holding one), one line per prompt in prompt
  order, server style ``{"prompt": ..., "outputs": [{"generated_text": ...}]}`` (a failed line holds
  ``{"error": ...}``, a failed output ``{"error": ..., "error_type": ...}``) or OpenAI style
  ``{"ok": true, "outputs": [{"message": {"content": ...}}]}``; a prompt any of whose outputs failed
  is left out and counted (``SampleSet.n_failed``, ``failed_reasons``), a file where all failed is
  refused;
  ``args.json`` beside it holds the run's settings;
- a lite_align run directory: ``manifest.json`` and ``samples/<condition>.jsonl``;
- one lite_align samples file: one ``Sample`` record per line.

Every reader returns plain data (``SampleSet``, ``PromptSet``) and raises a ``SamplesFileError`` or
``PromptFileError`` whose one-line message names the file, the line and what to do.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from lite_align.data import Prompt, PromptSet, SampleSet, failure_text
from lite_align.errors import LiteAlignError, PromptFileError, SamplesFileError
from lite_align.jsonio import loads as json_loads

__all__ = [
    "check_aligned",
    "normalise_text",
    "prompt_set_hash",
    "read_instances",
    "read_samples",
    "read_stance_labels",
    "StanceLabels",
]

PAPER_SAMPLES_FILE = "samples.jsonl"
RUN_MANIFEST = "manifest.json"
RUN_PROMPTS = "prompts.jsonl"  # the run's prompt set, in the paper's instance format
RUN_SAMPLES_DIR = "samples"
_FENCE = "```"
_RECORD_KEYS = ("prompt_id", "sample_index", "text", "finish_reason")


def normalise_text(text: str) -> str:
    """Strip whitespace, one trailing triple-backtick fence (the stop string the paper's generation
    server left in), then whitespace again.

    >>> normalise_text("  Yes, they are.\\n```\\n")
    'Yes, they are.'
    >>> normalise_text("code:\\n```\\nx\\n```\\n```")
    'code:\\n```\\nx\\n```'
    """
    text = text.strip()
    if text.endswith(_FENCE):
        text = text[: -len(_FENCE)]
    return text.strip()


def prompt_set_hash(texts: Iterable[str]) -> str:
    """sha256 (hex) of the prompt texts in order, joined by a record separator on its own line.

    >>> prompt_set_hash(["a", "b"]) == prompt_set_hash(["a", "b"]) != prompt_set_hash(["b", "a"])
    True
    """
    return hashlib.sha256("\n\x1e\n".join(texts).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------------
# JSON lines


class _Objects(list[tuple[int, dict[str, Any]]]):
    """(1-based line number, object) of a JSONL file; ``torn`` holds the error message of a last line
    that was cut off mid-write (invalid JSON, no final newline), which was left out."""

    torn: str | None = None


def _load_objects(path: Path, error: type[LiteAlignError]) -> _Objects:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: no such file; check the path") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, expected a JSONL file") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror}); check its permissions") from None
    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark some editors write
    if not raw.strip():
        raise error(f"{path}: the file is empty; it should hold one JSON object per line")
    chunks = raw.split(b"\n")
    complete = chunks[-1] == b""
    if complete:
        chunks.pop()
    objects = _Objects()
    for number, chunk in enumerate(chunks, start=1):
        try:
            objects.append((number, _parse_line(path, number, chunk, error)))
        except LiteAlignError as exc:
            if number == len(chunks) and not complete:  # cut off mid-write: no final newline
                objects.torn = exc.message
                break
            raise
    return objects


def _parse_line(path: Path, number: int, chunk: bytes, error: type[LiteAlignError]) -> dict[str, Any]:
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"{path}:{number}: not UTF-8 (byte {exc.start + 1} of the line); re-save the file as UTF-8"
        ) from None
    if not text.strip():
        raise error(f"{path}:{number}: empty line; every line must hold one JSON object")
    try:
        obj = json_loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}:{number}: invalid JSON ({exc.msg}, column {exc.colno}); fix or remove the line") from None
    if not isinstance(obj, dict):
        raise error(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _load_complete(path: Path, error: type[LiteAlignError]) -> _Objects:
    """Like _load_objects, for files whose every line counts (line number = prompt id)."""
    objects = _load_objects(path, error)
    if objects.torn:
        raise error(objects.torn)
    return objects


def _read_json_object(path: Path, error: type[LiteAlignError]) -> dict[str, Any]:
    try:
        obj = json_loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: not a readable JSON file ({exc}); fix or remove it") from None
    if not isinstance(obj, dict):
        raise error(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


# --------------------------------------------------------------------------------------------------
# Samples


def read_samples(path: str | Path, *, label: str | None = None) -> list[SampleSet]:
    """Every sample set at ``path``: a paper ``samples.jsonl`` (or its directory), a lite_align run
    directory (one set per condition, sorted by file name) or one lite_align samples file.

    ``label`` overrides the default label (the paper file's directory name, the condition name);
    with a run directory holding several conditions it is used as a prefix, ``label/condition``.
    """
    p = Path(path)
    if not p.exists():
        raise SamplesFileError(f"{p}: no such file or directory; check the path")
    if p.is_dir():
        if (p / RUN_MANIFEST).is_file():
            return _read_run_dir(p, label)
        if (p / PAPER_SAMPLES_FILE).is_file():
            return [_read_paper_file(p / PAPER_SAMPLES_FILE, label)]
        raise SamplesFileError(
            f"{p}: holds neither {PAPER_SAMPLES_FILE} nor a lite_align run "
            f"({RUN_MANIFEST} + {RUN_SAMPLES_DIR}/); point at one of those"
        )
    objects = _load_objects(p, SamplesFileError)
    if not objects:
        raise SamplesFileError(objects.torn or f"{p}: holds no complete line; nothing to read")
    number, obj = objects[0]
    if "prompt_id" in obj:
        manifest = p.parent.parent / RUN_MANIFEST
        in_run = p.parent.name == RUN_SAMPLES_DIR and manifest.is_file()
        if not in_run:
            return [_read_record_file(p, label or p.stem, {}, objects)]
        settings = _read_json_object(manifest, SamplesFileError)
        n_prompts = _run_prompt_count(p.parent.parent, settings)
        return [_read_record_file(p, label or p.stem, settings, objects, condition=p.stem, n_prompts=n_prompts)]
    if _paper_line_style(obj) is None:
        raise SamplesFileError(
            f"{p}:{number}: neither a paper samples line (outputs/error/ok) nor a lite_align record "
            "(prompt_id, text, ...); is this a samples file?"
        )
    if objects.torn:
        raise SamplesFileError(objects.torn)
    return [_read_paper_file(p, label, objects)]


def _paper_line_style(obj: Mapping[str, Any]) -> str | None:
    if "ok" in obj:
        return "openai"
    if "outputs" in obj or "error" in obj:
        return "server"
    return None


class _FailedLine(Exception):
    """A paper line that records a failure instead of outputs; ``reason`` says which kind."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _error_reason(record: Mapping[str, Any]) -> str:
    """The reason of a failure record: "validation error" for ``{"error_type": "validation"}``, else
    "request failed"."""
    kind = record.get("error_type")
    return f"{kind.strip()} error" if isinstance(kind, str) and kind.strip() else "request failed"


def _paper_texts(path: Path, number: int, obj: Mapping[str, Any]) -> tuple[str, ...]:
    """The normalised texts of one paper line. A line that records a failure raises _FailedLine:
    a failed request (``"ok": false``, or ``{"error": ...}`` in place of the outputs), no outputs,
    or any output that is a failure record (an ``error`` key) or has no text (docs/method.md §2: such a
    prompt is skipped and counted)."""
    style = _paper_line_style(obj)
    if style is None:
        raise SamplesFileError(f"{path}:{number}: not a paper samples line (expected 'outputs', 'error' or 'ok' keys)")
    if (style == "openai" and not obj["ok"]) or (style == "server" and "outputs" not in obj):
        raise _FailedLine(_error_reason(obj))
    outputs = obj.get("outputs")
    if not isinstance(outputs, list):
        raise SamplesFileError(f"{path}:{number}: 'outputs' must be a list of outputs")
    if not outputs:
        raise _FailedLine("no outputs")
    texts = []
    for output in outputs:
        if not isinstance(output, dict):
            raise SamplesFileError(f"{path}:{number}: an output is not a JSON object; expected one object per output")
        if "error" in output:
            raise _FailedLine(_error_reason(output))
        text: Any
        if style == "server":
            where = "generated_text"
            text = output.get("generated_text")
        else:
            where = "message.content"
            message = output.get("message")
            text = message.get("content", "") if isinstance(message, dict) else None
            text = "" if text is None and isinstance(message, dict) else text  # content null: an empty answer
        if text is None:
            raise _FailedLine(f"no text ({where} missing)")
        if not isinstance(text, str):
            raise SamplesFileError(f"{path}:{number}: an output's {where} is {type(text).__name__}, not text")
        texts.append(normalise_text(text))
    return tuple(texts)


def _read_paper_file(path: Path, label: str | None, objects: _Objects | None = None) -> SampleSet:
    by_prompt: dict[int, tuple[str, ...]] = {}
    reasons: Counter[str] = Counter()
    lines = objects if objects is not None else _load_complete(path, SamplesFileError)
    for number, obj in lines:
        try:
            by_prompt[number - 1] = _paper_texts(path, number, obj)
        except _FailedLine as failed:
            reasons[failed.reason] += 1
    if not by_prompt:
        raise SamplesFileError(
            f"{path}: every prompt failed ({len(lines)} of {len(lines)} lines: {failure_text(reasons)}); "
            "nothing to analyse, leave this file out"
        )
    args = path.parent / "args.json"
    settings = _read_json_object(args, SamplesFileError) if args.is_file() else {}
    return SampleSet(
        label=label or path.parent.name,
        by_prompt=by_prompt,
        source=str(path),
        n_failed=sum(reasons.values()),
        settings=settings,
        failed_reasons=dict(reasons),
    )


def _read_run_dir(run_dir: Path, label: str | None) -> list[SampleSet]:
    manifest = _read_json_object(run_dir / RUN_MANIFEST, SamplesFileError)
    files = sorted((run_dir / RUN_SAMPLES_DIR).glob("*.jsonl"))
    if not files:
        raise SamplesFileError(
            f"{run_dir / RUN_SAMPLES_DIR}: no <condition>.jsonl files; has the run generated anything?"
        )
    prompts_file = run_dir / RUN_PROMPTS
    prompts = {p.id: p.text for p in read_instances(prompts_file).prompts} if prompts_file.is_file() else {}
    n_prompts = len(prompts) if prompts else _run_prompt_count(run_dir, manifest)
    sets = []
    for f in files:
        name = f.stem if label is None else (label if len(files) == 1 else f"{label}/{f.stem}")
        found = _read_record_file(f, name, manifest, condition=f.stem, n_prompts=n_prompts)
        sets.append(replace(found, prompts=prompts))
    return sets


def _run_prompt_count(run_dir: Path, manifest: Mapping[str, Any]) -> int | None:
    """How many prompts a run directory's prompt set holds: its prompts.jsonl, else the manifest's
    count, else None (unknown)."""
    prompts_file = run_dir / RUN_PROMPTS
    if prompts_file.is_file():
        return len(read_instances(prompts_file).prompts)
    recorded_set = manifest.get("prompt_set")
    recorded = recorded_set.get("n_prompts") if isinstance(recorded_set, Mapping) else None
    return recorded if isinstance(recorded, int) and not isinstance(recorded, bool) else None


def _read_record_file(
    path: Path,
    label: str,
    settings: Mapping[str, Any],
    objects: _Objects | None = None,
    *,
    condition: str | None = None,
    n_prompts: int | None = None,
) -> SampleSet:
    """A lite_align samples file. Records with finish_reason "error" are failures, and a later
    record for the same (prompt, sample index) replaces a failure (a resumed run may retry it). As in
    released files, a prompt any of whose samples failed is left out and counted in ``n_failed``.

    A damaged file is refused, naming the line, rather than read into other figures: a record whose
    ``condition`` is not the file's (``condition``: the file's name in a run directory; else the
    first record's), a prompt id outside the prompt set (``n_prompts`` prompts, when known), and a
    second record for the same (prompt, sample index) with other text. A record repeated with the
    same text (two processes wrote the same sample) is kept once and counted in ``n_duplicates``."""
    latest: dict[tuple[int, int], tuple[int, dict[str, Any]]] = {}
    expected = condition
    duplicates = 0
    for number, obj in objects if objects is not None else _load_objects(path, SamplesFileError):
        missing = [k for k in _RECORD_KEYS if k not in obj]
        if missing:
            raise SamplesFileError(
                f"{path}:{number}: record lacks {', '.join(missing)}; is this a lite_align samples file?"
            )
        pid, index, text = obj["prompt_id"], obj["sample_index"], obj["text"]
        valid = isinstance(pid, int) and isinstance(index, int) and not isinstance(pid, bool)
        if not (valid and pid >= 0 and index >= 0 and isinstance(text, str)):
            raise SamplesFileError(f"{path}:{number}: prompt_id and sample_index must be integers >= 0, text a string")
        found = obj.get("condition")
        if found is not None:
            if expected is None:
                expected = found
            elif found != expected:
                raise SamplesFileError(
                    f"{path}:{number}: a sample of condition {found!r} in a file of {expected!r} samples; "
                    "the file is damaged: remove the line, or move the run aside and run it again"
                )
        if n_prompts is not None and pid >= n_prompts:
            raise SamplesFileError(
                f"{path}:{number}: prompt_id {pid} is outside the run's prompt set ({n_prompts} prompts, ids 0 to "
                f"{n_prompts - 1}); the file is damaged: remove the line, or move the run aside and run it again"
            )
        earlier = latest.get((pid, index))
        if earlier is not None and earlier[1]["finish_reason"] != "error":
            first_line, first = earlier
            if first["text"] == text:
                duplicates += 1  # the same sample written twice: keep the first
                continue
            raise SamplesFileError(
                f"{path}:{number}: prompt {pid} sample {index} again, with other text than line {first_line}; "
                "the file is damaged (two runs wrote it?): keep one of the two lines, or move the run aside "
                "and run it again"
            )
        latest[(pid, index)] = (number, obj)
    grouped: dict[int, list[tuple[int, str]]] = {}
    failed: set[int] = set()
    for (pid, index), (_, obj) in latest.items():
        if obj["finish_reason"] == "error":
            failed.add(pid)
        else:
            grouped.setdefault(pid, []).append((index, normalise_text(obj["text"])))
    by_prompt = {
        pid: tuple(text for _, text in sorted(items)) for pid, items in sorted(grouped.items()) if pid not in failed
    }
    return SampleSet(
        label=label,
        by_prompt=by_prompt,
        source=str(path),
        n_failed=len(failed),
        settings=dict(settings),
        failed_reasons={"generation error": len(failed)} if failed else {},
        n_duplicates=duplicates,
    )


def check_aligned(sets: Sequence[SampleSet], n_expected: int, *, against: str = "the prompt set") -> None:
    """Raise ``SamplesFileError`` unless every set covers exactly ``n_expected`` prompts (ids
    0..n_expected-1, failed prompts included), i.e. belongs to a prompt set of that size."""
    for s in sets:
        n_lines = s.n_prompts + s.n_failed
        too_big = [pid for pid in s.by_prompt if pid >= n_expected]
        if too_big or n_lines != n_expected:
            raise SamplesFileError(
                f"{s.source or s.label}: {n_lines} prompts, but {against} has {n_expected}; "
                "check that the samples were generated for this prompt set"
            )


# --------------------------------------------------------------------------------------------------
# Prompt sets and judge files


def _prompt_set_name(path: Path) -> str:
    for part in (path.stem, path.parent.name, path.parent.parent.name):
        if part and part not in {"data", "instances"}:
            return part
    return path.stem


def read_instances(path: str | Path) -> PromptSet:
    """The paper's instance file: one ``{"messages": [{"role": "user", "content": ...}]}`` per line;
    the prompt is the last user message, its id the line index."""
    p = Path(path)
    prompts = []
    for number, obj in _load_complete(p, PromptFileError):
        messages = obj.get("messages")
        turns = messages if isinstance(messages, list) else []
        users = [m for m in turns if isinstance(m, dict) and m.get("role") == "user"]
        content = users[-1].get("content") if users else None
        if not isinstance(content, str):
            raise PromptFileError(f'{p}:{number}: expected {{"messages": [{{"role": "user", "content": "..."}}]}}')
        prompts.append(Prompt(id=number - 1, text=content))
    return PromptSet(
        name=_prompt_set_name(p),
        prompts=tuple(prompts),
        source=str(p),
        sha256=prompt_set_hash(q.text for q in prompts),
    )


class StanceLabels(list[str | None]):
    """One label per judge line (None: the answer did not parse, or the request failed); ``failed``
    maps the 0-based index of each line whose request failed to the reason."""

    def __init__(self, labels: Iterable[str | None] = (), failed: Mapping[int, str] | None = None) -> None:
        super().__init__(labels)
        self.failed: dict[int, str] = dict(failed or {})


def read_stance_labels(path: str | Path) -> StanceLabels:
    """One stance label per line of a judge file (OpenAI style; the answer is JSON with a "stance"
    key), lower-cased and stripped; None where the answer does not parse or the request failed (those
    lines are also in ``.failed``). ``path`` may be the file or the directory holding its
    ``samples.jsonl``. A file whose every request failed is refused."""
    p = Path(path)
    if p.is_dir() and (p / PAPER_SAMPLES_FILE).is_file():
        p = p / PAPER_SAMPLES_FILE
    labels: list[str | None] = []
    failed: dict[int, str] = {}
    for number, obj in _load_complete(p, SamplesFileError):
        if "ok" not in obj:
            raise SamplesFileError(f"{p}:{number}: not a judge answer line (expected an 'ok' key)")
        try:
            texts = _paper_texts(p, number, obj)
        except _FailedLine as exc:
            failed[number - 1] = exc.reason
            labels.append(None)
            continue
        labels.append(_stance_of(texts[0]))
    if len(failed) == len(labels):
        raise SamplesFileError(
            f"{p}: every judge request failed ({len(labels)} of {len(labels)} lines: "
            f"{failure_text(Counter(failed.values()))}); nothing to count, leave this file out"
        )
    return StanceLabels(labels, failed)


def _stance_of(answer: str) -> str | None:
    try:
        obj = json_loads(answer)
    except json.JSONDecodeError:
        return None
    stance = obj.get("stance") if isinstance(obj, dict) else None
    return stance.strip().lower() if isinstance(stance, str) else None
