"""Prompt sets and the base model's prompt formats (docs/method.md §4).

Formats, with ``Q``/``A``/``S`` standing for a query, an answer and a summary::

    zero-shot   # Query:\\n```\\nQ\\n```\\n\\n# Answer:\\n```\\n
    in-context  # Instructions:\\n\\n{system}\\n\\n  + K x (query block + answer block)  + zero-shot
    summary     like in-context, with a "# Summary:" block between each query and its answer,
                and one after the test query, before the open answer block

Text shared by every prompt of a condition comes first, so its KV cache is computed once:
:func:`shared_prefix` tells the engine how long that part is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import Prompt, PromptSet
from .errors import PromptFileError
from .paths import prompts_dir
from .readers import prompt_set_hash, read_instances

FENCE = "```"
BUILTIN_SETS = ("open", "yesno")


# --- prompt sets -----------------------------------------------------------------------------


def _read_text(path: Path, what: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PromptFileError(f"{what} {path} not found") from None
    except OSError as exc:
        raise PromptFileError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PromptFileError(f"{path}:{line}: not UTF-8 text; save the file as UTF-8") from None
    return text.removeprefix("\ufeff")  # the byte-order mark some editors write is not text


def read_prompt_lines(path: Path) -> list[str]:
    r"""The prompts of a plain-text file, by one rule:

    - one prompt per line; only a newline ends a line (``\r\n`` too): form feeds, vertical tabs and
      other Unicode separators stay inside the prompt;
    - a UTF-8 byte-order mark at the start of the file is ignored;
    - whitespace around each line is stripped, and blank lines are skipped;
    - a line starting with ``#`` is a comment. A prompt that starts with ``#`` is written ``\#...``:
      a line starting with ``\#`` or ``\\`` loses that first backslash.

    >>> import tempfile; f = Path(tempfile.mkdtemp()) / "p.txt"
    >>> _ = f.write_bytes("\ufeff# mine\r\nFirst?\x0bstill first\n\n\\# Second\n".encode())
    >>> read_prompt_lines(f)
    ['First?\x0bstill first', '# Second']
    """
    out = []
    for line in _read_text(path, "prompt file").split("\n"):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        out.append(text[1:] if text.startswith(("\\#", "\\\\")) else text)
    return out


def load_prompt_set(spec: str, *, limit: int | None = None) -> PromptSet:
    """A built-in set name (``open``, ``yesno``) or a file: ``.txt`` (one prompt per line) or the
    paper's instance ``.jsonl``. ``limit`` keeps the first N prompts."""
    if spec in BUILTIN_SETS:
        path, name = prompts_dir() / "sets" / f"{spec}.txt", spec
    else:
        path, name = Path(spec).expanduser(), Path(spec).stem
        if not path.exists():
            raise PromptFileError(
                f"prompt set '{spec}' is neither a built-in set ({', '.join(BUILTIN_SETS)}) nor an existing file"
            )
    if path.suffix == ".jsonl":
        texts = read_instances(path).texts()
    else:
        texts = read_prompt_lines(path)
    if not texts:
        raise PromptFileError(f"prompt set {path} holds no prompts; add one prompt per line")
    if limit is not None:
        if limit < 1:
            raise PromptFileError(f"--limit must be at least 1, got {limit}")
        texts = texts[:limit]
    prompts = tuple(Prompt(i, t) for i, t in enumerate(texts))
    return PromptSet(name=name, prompts=prompts, source=str(path), sha256=prompt_set_hash(texts))


# --- the texts kept in prompts/ --------------------------------------------------------------


@dataclass(frozen=True)
class PromptTexts:
    """The project's own prompt wording: the in-context instructions, the static example queries
    and the summariser's instruction (``{query}``/``{answer}`` placeholders)."""

    system: str
    static_queries: tuple[str, ...]
    summarize: str

    @property
    def version(self) -> str:
        """A short hash of all three, recorded in the manifest and used in cache keys."""
        h = hashlib.sha256("\x1e".join([self.system, *self.static_queries, self.summarize]).encode())
        return h.hexdigest()[:12]


def load_prompt_texts(directory: Path | None = None) -> PromptTexts:
    d = directory or prompts_dir()
    system = _read_text(d / "system.txt", "instructions file").strip()
    statics = tuple(read_prompt_lines(d / "static_examples.txt"))
    summarize = _read_text(d / "summarize.txt", "summariser prompt").strip()
    if not statics:
        raise PromptFileError(f"{d / 'static_examples.txt'} holds no example queries")
    for key in ("{query}", "{answer}"):
        if key not in summarize:
            raise PromptFileError(f"{d / 'summarize.txt'} must contain the placeholder {key}")
    return PromptTexts(system=system, static_queries=statics, summarize=summarize)


# --- formats ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    query: str
    answer: str
    summary: str | None = None


def _clean(text: str) -> str:
    """Block content: stripped, and without triple backticks, which would close the block early."""
    return text.strip().replace(FENCE, "'''")


def _block(title: str, content: str) -> str:
    return f"# {title}:\n{FENCE}\n{_clean(content)}\n{FENCE}\n\n"


OPEN_ANSWER = f"# Answer:\n{FENCE}\n"


def zero_shot(query: str) -> str:
    """>>> zero_shot("Hi?")
    '# Query:\\n```\\nHi?\\n```\\n\\n# Answer:\\n```\\n'"""
    return _block("Query", query) + OPEN_ANSWER


def instructions(system: str) -> str:
    return f"# Instructions:\n\n{system.strip()}\n\n"


def example_block(ex: Example) -> str:
    text = _block("Query", ex.query)
    if ex.summary is not None:
        text += _block("Summary", ex.summary)
    return text + _block("Answer", ex.answer)


def in_context(system: str, examples: Sequence[Example], query: str, summary: str | None = None) -> str:
    """Instructions, the K examples, the query (and its summary hint), then the open answer."""
    head = instructions(system) + "".join(example_block(e) for e in examples)
    tail = _block("Query", query)
    if summary is not None:
        tail += _block("Summary", summary)
    return head + tail + OPEN_ANSWER


def shared_prefix(prompts: Sequence[str]) -> str:
    """The longest leading text common to all prompts, cut back to the end of a block (so the
    tokenizer sees the same boundary in every prompt)."""
    if not prompts:
        return ""
    first, last = min(prompts), max(prompts)
    n = 0
    for a, b in zip(first, last, strict=False):
        if a != b:
            break
        n += 1
    common = first[:n]
    cut = common.rfind(f"{FENCE}\n\n")
    if cut >= 0:
        return common[: cut + len(FENCE) + 2]
    cut = common.rfind("\n\n")
    return common[: cut + 2] if cut >= 0 else ""


def summarize_request(template: str, query: str, answer: str) -> str:
    return template.replace("{query}", query.strip()).replace("{answer}", answer.strip())


# --- example selection -----------------------------------------------------------------------


def random_neighbours(n_prompts: int, prompt_id: int, k: int, seed: int) -> list[int]:
    """K other prompt ids drawn without replacement, seeded by (seed, prompt id)."""
    others = [i for i in range(n_prompts) if i != prompt_id]
    rng = np.random.default_rng([seed, prompt_id])
    k = min(k, len(others))
    return [others[i] for i in rng.choice(len(others), size=k, replace=False)]


def knn_neighbours(vectors: np.ndarray, prompt_id: int, k: int) -> list[int]:
    """The K other prompts most similar by cosine (rows L2-normalised here), most similar first;
    ties broken by the lower id."""
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    v = v / np.where(norms == 0, 1.0, norms)
    sims = v @ v[prompt_id]
    order = sorted((i for i in range(len(v)) if i != prompt_id), key=lambda i: (-sims[i], i))
    return order[:k]
