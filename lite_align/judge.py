"""A local judge: a GGUF chat model asked for quality scores, coverage comparisons and stance labels
(docs/method.md §7), its replies forced into JSON by a grammar and parsed into typed results.

    judge = Judge(LlamaCppGenerator(path, n_ctx=JUDGE_N_CTX), sha256_file(path))
    judge.quality([("Is the sky blue?", "Yes.")])  ->  [Verdict(value=QualityScores(...), ...)]

Three tasks, each with its own prompt file in ``prompts/judge/<task>.txt`` (our wording; its first
line is ``# version: N``, more ``#`` lines after it are comments, the rest is the user message with
``{question}``/``{answer}``/``{answer_a}``/``{answer_b}`` placeholders) and a JSON schema:

- ``quality``: helpfulness, clarity, factuality, depth, engagement, each an integer 1-5;
- ``coverage``: answer A against text B: topics in A only / B only / both (up to 4 short strings
  each; their counts are what the report uses) and ``missing_from_a``, 1 (A holds all of B) to 5;
- ``stance``: yes / no / both / other and a short reason.

Decoding is greedy (temperature 0, no repetition penalty: JSON repeats its punctuation) and
constrained by a GBNF grammar built from the schema (``schema_to_gbnf``): keys in a fixed order with
fixed separators, strings of printable ASCII without quotes or backslashes and of bounded length,
lists of bounded length. Every reply the grammar allows is valid JSON of at most
``max_json_chars(schema)`` characters, so ``max_tokens`` is set to that bound (a token adds at least
one character): even a model with random weights ends with parseable JSON. A reply can still fail to
parse (a generator without grammar support, a reply cut by the context): it is returned as a
``Verdict`` with ``value=None`` and the reason in ``problem``, and counted, never dropped.

Judgements are cached on disk (SQLite, ``<cache_dir>/judge/judgements.sqlite``) by the sha256 of
(judge model sha256, task, prompt version, sha256 of the rendered prompt, max_tokens); the rendered
prompt holds the task input and the prompt's wording. The raw reply is stored and parsed on
reading, so a second run generates nothing.

Answers longer than ``max_answer_chars`` (default 2000, ~500 tokens) are cut at a word boundary and
marked " [...]" before rendering; a prompt that still does not fit the generator's context is not
sent and comes back unparsed ("too long").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from lite_align.errors import ConfigError, PromptFileError
from lite_align.generation.base import GenerationRequest, Generator, SamplingParams
from lite_align.jsonio import loads as json_loads
from lite_align.paths import cache_dir, prompts_dir
from lite_align.sqlite_cache import open_versioned, unusable

__all__ = [
    "ASPECTS",
    "JUDGE_N_CTX",
    "SCHEMAS",
    "STANCES",
    "TASKS",
    "CoverageComparison",
    "Judge",
    "JudgeCache",
    "JudgePrompt",
    "JudgeStats",
    "QualityScores",
    "StanceLabel",
    "Verdict",
    "load_judge_prompt",
    "max_json_chars",
    "parse_reply",
    "render_prompt",
    "schema_to_gbnf",
]

TASKS = ("quality", "coverage", "stance")
ASPECTS = ("helpfulness", "clarity", "factuality", "depth", "engagement")
STANCES = ("yes", "no", "both", "other")
PLACEHOLDERS = {
    "quality": ("question", "answer"),
    "coverage": ("question", "answer_a", "answer_b"),
    "stance": ("question", "answer"),
}
MAX_ANSWER_CHARS = 2000
JUDGE_N_CTX = 4096  # context per sequence that fits a coverage prompt of two full-length answers
CACHE_FORMAT = "lite_align-judgements"
CACHE_VERSION = 1
TOPIC_CHARS = 48
TOPICS_MAX = 4
REASON_CHARS = 160

_SCORE = {"type": "integer", "minimum": 1, "maximum": 5}
_TOPICS = {
    "type": "array",
    "items": {"type": "string", "minLength": 1, "maxLength": TOPIC_CHARS},
    "maxItems": TOPICS_MAX,
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "quality": {
        "type": "object",
        "properties": {aspect: _SCORE for aspect in ASPECTS},
        "required": list(ASPECTS),
    },
    "coverage": {
        "type": "object",
        "properties": {
            "topics_a_only": _TOPICS,
            "topics_b_only": _TOPICS,
            "topics_both": _TOPICS,
            "missing_from_a": _SCORE,
        },
        "required": ["topics_a_only", "topics_b_only", "topics_both", "missing_from_a"],
    },
    "stance": {
        "type": "object",
        "properties": {
            "stance": {"enum": list(STANCES)},
            "reason": {"type": "string", "minLength": 0, "maxLength": REASON_CHARS},
        },
        "required": ["stance", "reason"],
    },
}


# ---------------------------------------------------------------------------------------------
# Typed results


@dataclass(frozen=True)
class QualityScores:
    helpfulness: int
    clarity: int
    factuality: int
    depth: int
    engagement: int


@dataclass(frozen=True)
class CoverageComparison:
    topics_a_only: tuple[str, ...]
    topics_b_only: tuple[str, ...]
    topics_both: tuple[str, ...]
    missing_from_a: int  # 1: A holds everything B says ... 5: A holds almost nothing of B


@dataclass(frozen=True)
class StanceLabel:
    stance: str  # one of STANCES
    reason: str


T = TypeVar("T")


@dataclass(frozen=True)
class Verdict(Generic[T]):
    """One judgement: ``value`` is None when the reply could not be parsed (``problem`` says why)."""

    value: T | None
    raw: str
    problem: str = ""
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.value is not None


# ---------------------------------------------------------------------------------------------
# Prompt files


@dataclass(frozen=True)
class JudgePrompt:
    task: str
    version: str
    template: str
    source: str


_VERSION_LINE = re.compile(r"#\s*version:\s*(\S+)\s*$")


def load_judge_prompt(task: str, directory: Path | None = None) -> JudgePrompt:
    """``<directory>/<task>.txt`` (default ``prompts/judge/``), checked: a version line first, every
    placeholder of the task present."""
    if task not in TASKS:
        raise ConfigError(f"unknown judge task {task!r}; use one of {', '.join(TASKS)}")
    if directory is None:
        directory = prompts_dir() / "judge"
    path = Path(directory) / f"{task}.txt"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptFileError(f"{path}: judge prompt not found; restore it from the lite_align checkout") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptFileError(f"{path}: cannot be read ({exc}); re-save it as UTF-8 text") from None
    lines = text.splitlines()
    match = _VERSION_LINE.match(lines[0]) if lines else None
    if match is None:
        raise PromptFileError(f"{path}:1: the first line must be '# version: N'; add it (bump N after every edit)")
    body = lines[1:]
    while body and body[0].startswith("#"):
        body.pop(0)
    template = "\n".join(body).strip()
    for name in PLACEHOLDERS[task]:
        if "{" + name + "}" not in template:
            raise PromptFileError(f"{path}: the {task} prompt must contain the placeholder {{{name}}}")
    return JudgePrompt(task=task, version=match.group(1), template=template, source=str(path))


def render_prompt(prompt: JudgePrompt, fields: Mapping[str, str]) -> str:
    """The template with its placeholders filled in one pass (a field's text that happens to hold
    "{answer}" is not filled again; other braces, such as the JSON form, are left alone).

    >>> p = JudgePrompt("stance", "1", "Q: {question}\\nA: {answer}\\n{\\"stance\\": ...}", "")
    >>> render_prompt(p, {"question": "Why?", "answer": "Because {question}"})
    'Q: Why?\\nA: Because {question}\\n{"stance": ...}'
    """
    names = PLACEHOLDERS[prompt.task]
    missing = [n for n in names if n not in fields]
    if missing:
        raise ValueError(f"missing fields for the {prompt.task} prompt: {', '.join(missing)}")
    pattern = re.compile(r"\{(" + "|".join(names) + r")\}")
    return pattern.sub(lambda m: fields[m.group(1)], prompt.template)


def shorten(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters at a word boundary, marked " [...]".

    >>> shorten("one two three four", 12)
    'one two [...]'
    """
    text = text.strip()
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    return (cut[:space] if space > max_chars // 2 else cut).rstrip() + " [...]"


# ---------------------------------------------------------------------------------------------
# Grammar


def _rule_name(key: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", key).strip("-") or "value"


def _literal(text: str) -> str:
    """A GBNF string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# a string character: printable ASCII except " and \ (so no escapes, and one character = one byte)
_CHAR_RULE = r"char ::= [\x20\x21\x23-\x5B\x5D-\x7E]"


def schema_to_gbnf(schema: Mapping[str, Any]) -> str:
    """GBNF for the subset of JSON schema used here: an object whose keys all appear, in order, with
    values that are integer ranges, enums, bounded strings or bounded arrays of those.

    >>> print(schema_to_gbnf({"type": "object", "properties": {"ok": {"enum": ["y", "n"]}}}))
    root ::= "{" "\\"ok\\": " ok "}"
    ok ::= "\\"y\\"" | "\\"n\\""
    char ::= [\\x20\\x21\\x23-\\x5B\\x5D-\\x7E]
    """
    rules: dict[str, str] = {}
    if schema.get("type") != "object":
        raise ValueError("the top of a judge schema must be an object")
    parts = []
    for i, (key, sub) in enumerate(schema["properties"].items()):
        name = _rule_name(key)
        rules[name] = _value_rule(sub, name, rules)
        parts.append(_literal(("" if i == 0 else ", ") + json.dumps(key) + ": ") + " " + name)
    root = 'root ::= "{" ' + " ".join(parts) + ' "}"'
    return "\n".join([root, *(f"{name} ::= {body}" for name, body in rules.items()), _CHAR_RULE])


def _value_rule(schema: Mapping[str, Any], name: str, rules: dict[str, str]) -> str:
    if "enum" in schema:
        return " | ".join(_literal(json.dumps(v)) for v in schema["enum"])
    kind = schema.get("type")
    if kind == "integer":
        lo, hi = int(schema["minimum"]), int(schema["maximum"])
        return " | ".join(_literal(str(v)) for v in range(lo, hi + 1))
    if kind == "string":
        lo, hi = int(schema.get("minLength", 0)), int(schema["maxLength"])
        return '"\\"" char{' + f"{lo},{hi}" + '} "\\""'
    if kind == "array":
        item = f"{name}-item"
        rules[item] = _value_rule(schema["items"], item, rules)
        most = int(schema["maxItems"])
        inner = f"{item} ({_literal(', ')} {item}){{0,{most - 1}}}" if most > 1 else item
        return f'"[" ({inner})? "]"'
    raise ValueError(f"unsupported schema for a judge grammar: {dict(schema)}")


def max_json_chars(schema: Mapping[str, Any]) -> int:
    """The longest reply ``schema_to_gbnf(schema)`` allows, in characters (= bytes: ASCII only).

    >>> max_json_chars(SCHEMAS["quality"]) == len('{"helpfulness": 5, "clarity": 5, "factuality": 5, '
    ...                                           '"depth": 5, "engagement": 5}')
    True
    """
    if "enum" in schema:
        return max(len(json.dumps(v)) for v in schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        keys = list(schema["properties"])
        inner = sum(len(json.dumps(k)) + 2 + max_json_chars(schema["properties"][k]) for k in keys)
        return 2 + inner + 2 * (len(keys) - 1)
    if kind == "integer":
        return max(len(str(schema["minimum"])), len(str(schema["maximum"])))
    if kind == "string":
        return int(schema["maxLength"]) + 2
    if kind == "array":
        most = int(schema["maxItems"])
        return 2 + most * max_json_chars(schema["items"]) + 2 * max(most - 1, 0)
    raise ValueError(f"unsupported schema: {dict(schema)}")


# ---------------------------------------------------------------------------------------------
# Parsing


class _Unparsable(ValueError):
    pass


def _check(schema: Mapping[str, Any], value: Any, where: str) -> None:
    """Raise ``_Unparsable`` naming the first place ``value`` departs from ``schema``."""
    if "enum" in schema:
        if value not in schema["enum"]:
            raise _Unparsable(f"{where} is {value!r}, not one of {', '.join(map(str, schema['enum']))}")
        return
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            raise _Unparsable(f"{where} is not a JSON object")
        for key in schema["required"]:
            if key not in value:
                raise _Unparsable(f"{where} lacks {key!r}")
            _check(schema["properties"][key], value[key], key)
    elif kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Unparsable(f"{where} is {value!r}, not a whole number")
        if not schema["minimum"] <= value <= schema["maximum"]:
            raise _Unparsable(f"{where} is {value}, outside {schema['minimum']}-{schema['maximum']}")
    elif kind == "string":
        if not isinstance(value, str):
            raise _Unparsable(f"{where} is not a string")
    elif kind == "array":
        if not isinstance(value, list):
            raise _Unparsable(f"{where} is not a list")
        for item in value:
            _check(schema["items"], item, f"an item of {where}")


def _build(task: str, obj: dict[str, Any]) -> Any:
    if task == "quality":
        return QualityScores(**{aspect: obj[aspect] for aspect in ASPECTS})
    if task == "coverage":
        return CoverageComparison(
            topics_a_only=tuple(obj["topics_a_only"]),
            topics_b_only=tuple(obj["topics_b_only"]),
            topics_both=tuple(obj["topics_both"]),
            missing_from_a=obj["missing_from_a"],
        )
    return StanceLabel(stance=obj["stance"], reason=obj["reason"])


def parse_reply(task: str, raw: str, finish_reason: str = "stop") -> Verdict[Any]:
    """The typed value of a judge's reply, or a Verdict with ``value=None`` and the problem.

    >>> parse_reply("stance", '{"stance": "both", "reason": "weighs both"}').value
    StanceLabel(stance='both', reason='weighs both')
    >>> parse_reply("quality", '{"helpfulness": 7}').problem
    'helpfulness is 7, outside 1-5'
    >>> parse_reply("quality", '{"helpfulness": 3}').problem
    "reply lacks 'clarity'"
    """
    try:
        obj = json_loads(raw)
    except json.JSONDecodeError as exc:
        cut = " (cut off at max_tokens or the context)" if finish_reason == "length" else ""
        return Verdict(None, raw, f"not JSON: {exc.msg}{cut}")
    try:
        _check(SCHEMAS[task], obj, "reply")
    except _Unparsable as exc:
        return Verdict(None, raw, str(exc))
    return Verdict(_build(task, obj), raw)


# ---------------------------------------------------------------------------------------------
# Cache


class JudgeCache:
    """Raw judge replies in one SQLite file, keyed by a hex digest (see the module docstring). A file
    of another format, or one SQLite cannot read, is replaced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            tables = [
                "CREATE TABLE IF NOT EXISTS judgements (key TEXT PRIMARY KEY, task TEXT, model_sha256 TEXT, "
                "prompt_version TEXT, input_sha256 TEXT, raw TEXT NOT NULL, finish_reason TEXT NOT NULL)"
            ]
            meta = {"format": CACHE_FORMAT, "version": str(CACHE_VERSION)}
            self._conn, _ = open_versioned(self.path, tables, meta, what="judge cache")
        return self._conn

    def _unusable(self, exc: Exception) -> ConfigError:
        return unusable("judge cache", self.path, exc)

    def get_many(self, keys: Sequence[str]) -> dict[str, tuple[str, str]]:
        """key -> (raw reply, finish reason) for the keys present."""
        conn = self._connect()
        found: dict[str, tuple[str, str]] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT key, raw, finish_reason FROM judgements WHERE key IN ({marks})"
            for key, raw, finish in conn.execute(query, chunk):
                found[key] = (raw, finish)
        return found

    def put_many(self, rows: Sequence[tuple[str, str, str, str, str, str, str]]) -> None:
        """Rows of (key, task, model sha256, prompt version, input sha256, raw, finish reason)."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT OR REPLACE INTO judgements VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            with contextlib.suppress(sqlite3.DatabaseError):
                conn.execute("ROLLBACK")
            raise self._unusable(exc) from None

    def __len__(self) -> int:
        (n,) = self._connect().execute("SELECT COUNT(*) FROM judgements").fetchone()
        return int(n)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def default_cache_path() -> Path:

    return cache_dir() / "judge" / "judgements.sqlite"


# ---------------------------------------------------------------------------------------------
# The judge


@dataclass
class JudgeStats:
    """Counters since the judge was made: judgements asked for, answered from the cache, generated,
    not sent (too long for the context), and replies that did not parse (cached ones included)."""

    requested: int = 0
    cached: int = 0
    generated: int = 0
    too_long: int = 0
    unparsed: int = 0
    seconds: float = 0.0  # wall time spent generating
    problems: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        rate = self.generated / self.seconds if self.seconds > 0 else None
        return {
            "requested": self.requested,
            "cached": self.cached,
            "generated": self.generated,
            "too_long": self.too_long,
            "unparsed": self.unparsed,
            "seconds": round(self.seconds, 3),
            "judgements_per_second": rate,
            "problems": dict(self.problems),
        }


class Judge:
    """Quality scores, coverage comparisons and stance labels from a local chat model.

    ``generator`` renders chat prompts and generates with grammar-constrained ``SamplingParams``;
    ``judge_model_sha256`` identifies its weights in the cache key; ``prompts_dir`` holds the three
    prompt files (default ``prompts/judge``). ``cache_path=None`` uses the lite_align cache dir;
    ``use_cache=False`` keeps nothing.
    """

    def __init__(
        self,
        generator: Generator,
        judge_model_sha256: str,
        prompts_dir: Path | None = None,
        *,
        name: str = "",
        cache_path: Path | None = None,
        use_cache: bool = True,
        max_answer_chars: int = MAX_ANSWER_CHARS,
    ) -> None:
        if max_answer_chars < 100:
            raise ConfigError(f"max_answer_chars must be at least 100, got {max_answer_chars}")
        self.generator = generator
        self.model_sha256 = judge_model_sha256
        self.prompts = {task: load_judge_prompt(task, prompts_dir) for task in TASKS}
        self.grammars = {task: schema_to_gbnf(SCHEMAS[task]) for task in TASKS}
        self.params = {
            task: SamplingParams(
                temperature=0.0,
                repetition_penalty=1.0,
                max_tokens=max_json_chars(SCHEMAS[task]) + 8,  # + end-of-turn and slack
                grammar=self.grammars[task],
            )
            for task in TASKS
        }
        # the instructions before the first placeholder are the same in every prompt of a task: the
        # engine reads them once (GenerationRequest.prefix)
        self._heads = {task: _head(p) for task, p in self.prompts.items()}
        info = getattr(generator, "info", None)
        self.name = name or getattr(info, "name", "") or str(getattr(generator, "model_path", "judge"))
        self.max_answer_chars = max_answer_chars
        self.cache = JudgeCache(cache_path or default_cache_path()) if use_cache else None
        self.stats = JudgeStats()

    # -- the three tasks -------------------------------------------------------------------------

    def quality(self, items: Sequence[tuple[str, str]]) -> list[Verdict[QualityScores]]:
        """Scores of each (question, answer)."""
        return self._judge("quality", [{"question": q, "answer": a} for q, a in items])

    def compare(self, items: Sequence[tuple[str, str, str]]) -> list[Verdict[CoverageComparison]]:
        """Coverage of each (question, answer A, text B): topics and how much of B is missing from A."""
        return self._judge("coverage", [{"question": q, "answer_a": a, "answer_b": b} for q, a, b in items])

    def stance(self, items: Sequence[tuple[str, str]]) -> list[Verdict[StanceLabel]]:
        """Stance of each (yes/no question, answer)."""
        return self._judge("stance", [{"question": q, "answer": a} for q, a in items])

    def describe(self) -> dict[str, Any]:
        """Model name, file, size and the prompt versions, for the report."""
        info = getattr(self.generator, "info", None)
        return {
            "model": self.name,
            "sha256": self.model_sha256,
            "file": str(getattr(self.generator, "model_path", "")) or None,
            "size_bytes": getattr(info, "size", None),
            "file_type": getattr(info, "file_type", None),
            "prompt_versions": {task: p.version for task, p in self.prompts.items()},
        }

    # -- machinery -------------------------------------------------------------------------------

    def render(self, task: str, fields: Mapping[str, str]) -> str:
        """The user message for one judgement (answers shortened, the question kept whole)."""
        short = {k: v if k == "question" else shorten(v, self.max_answer_chars) for k, v in fields.items()}
        return render_prompt(self.prompts[task], short)

    def _key(self, task: str, message: str) -> tuple[str, str]:
        input_sha = hashlib.sha256(message.encode("utf-8")).hexdigest()
        material = json.dumps(
            [self.model_sha256, task, self.prompts[task].version, input_sha, self.params[task].max_tokens]
        )
        return hashlib.sha256(material.encode("utf-8")).hexdigest(), input_sha

    def _judge(self, task: str, items: Sequence[Mapping[str, str]]) -> list[Verdict[Any]]:
        messages = [self.render(task, fields) for fields in items]
        keyed = [self._key(task, m) for m in messages]
        keys = [k for k, _ in keyed]
        replies: dict[str, tuple[str, str]] = self.cache.get_many(keys) if self.cache is not None else {}
        cached = set(replies)
        todo: dict[str, tuple[str, str]] = {}  # key -> (rendered chat prompt, input sha)
        too_long: set[str] = set()
        limit = _context_limit(self.generator)
        for key, (_, input_sha), message in zip(keys, keyed, messages, strict=True):
            if key in replies or key in todo or key in too_long:
                continue
            prompt = self.generator.render_chat([{"role": "user", "content": message}])
            if limit is not None and len(self.generator.tokenize(prompt)) + self.params[task].max_tokens > limit:
                too_long.add(key)
            else:
                todo[key] = (prompt, input_sha)
        if todo:
            replies.update(self._generate(task, todo))
        verdicts = []
        for key in keys:
            if key in too_long:
                verdict: Verdict[Any] = Verdict(None, "", "too long for the judge's context; raise n_ctx")
                self.stats.too_long += 1
            else:
                raw, finish = replies[key]
                verdict = parse_reply(task, raw, finish)
                if key in cached:
                    verdict = Verdict(verdict.value, verdict.raw, verdict.problem, cached=True)
                    self.stats.cached += 1
            if not verdict.ok:
                self.stats.unparsed += 1
                reason = verdict.problem.split(":")[0]
                self.stats.problems[reason] = self.stats.problems.get(reason, 0) + 1
            verdicts.append(verdict)
        self.stats.requested += len(keys)
        return verdicts

    def _generate(self, task: str, todo: Mapping[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
        head = self._heads[task]
        requests = [
            GenerationRequest(
                key=key, prompt=prompt, seeds=(0,), params=self.params[task], prefix=_shared_prefix(prompt, head)
            )
            for key, (prompt, _) in todo.items()
        ]
        start = time.perf_counter()
        out: dict[str, tuple[str, str]] = {}
        for result in self.generator.generate(requests):
            out[str(result.key)] = (result.text, result.finish_reason)
        self.stats.seconds += time.perf_counter() - start
        self.stats.generated += len(out)
        missing = [key for key in todo if key not in out]
        for key in missing:  # a generator that skipped a request: an empty, unparseable reply
            out[key] = ("", "error")
        if self.cache is not None:
            version = self.prompts[task].version
            self.cache.put_many(
                [
                    (key, task, self.model_sha256, version, todo[key][1], raw, finish)
                    for key, (raw, finish) in out.items()
                    if key not in missing
                ]
            )
        return out

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()


def _head(prompt: JudgePrompt) -> str:
    """The template's text before its first placeholder."""
    starts = [prompt.template.find("{" + name + "}") for name in PLACEHOLDERS[prompt.task]]
    return prompt.template[: min(i for i in starts if i >= 0)]


def _shared_prefix(chat_prompt: str, head: str) -> str:
    """The rendered chat prompt up to the end of the task's fixed instructions ("" if not found).

    >>> _shared_prefix("<user>Rate this.\\nQ: why?<end>", "Rate this.\\nQ: ")
    '<user>Rate this.\\nQ: '
    """
    at = chat_prompt.find(head) if head else -1
    return chat_prompt[: at + len(head)] if at >= 0 else ""


def _context_limit(generator: Any) -> int | None:
    """Positions one sequence may use, when the generator says (``LlamaCppGenerator.max_positions``)."""
    limit = getattr(generator, "max_positions", None)
    return int(limit) if isinstance(limit, int) else None
