"""The study's conditions (docs/method.md §4) as objects, and the presets that size a run.

``chat`` is the aligned teacher itself; the base model runs zero-shot (``base``) and in-context
(``icl-*``). Every sampled condition has a greedy twin (``<name>-greedy``: one sample at T=0).

A ``Condition`` says everything the study, the planner and the runner need: which examples (none,
the static ones, random or nearest other prompts), whether summary hints come with them, which
prompt format follows, and what must exist first (the embedder, the teacher's static answers, its
answers to the prompts, summaries). Nothing outside this module interprets a condition's name.
Adding a condition is one ``register_condition(Condition(...))`` call (its greedy twin comes along).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace

from .errors import ConfigError

TEACHER = "chat"
GREEDY_SUFFIX = "-greedy"
EXAMPLES = ("none", "static", "random", "knn")


@dataclass(frozen=True)
class Condition:
    """One condition of the study: which model answers, with which in-context examples, in which
    prompt format, and what it needs before it can run.

    ``examples``: ``none`` (zero-shot), ``static`` (the fixed example questions with the teacher's
    answers to them), ``random`` (``k`` other prompts of the set, seeded, with the teacher's sample
    0) or ``knn`` (the ``k`` prompts nearest by sentence vector, with the teacher's sample 0).
    ``summaries``: each example and the query carry a summary hint of the teacher's answer.
    ``greedy``: one sample at T=0 (the twin of ``sampled``).

    >>> c = condition("icl-knn-greedy")
    >>> c.sampled, c.greedy, c.needs_embedder, c.prompt_format
    ('icl-knn', True, True, 'in-context')
    """

    name: str
    examples: str = "none"
    summaries: bool = False
    teacher: bool = False
    greedy: bool = False
    sampled: str = ""  # the sampled twin's name (its own name when sampled)
    description: str = ""

    def __post_init__(self) -> None:
        if self.examples not in EXAMPLES:
            raise ValueError(f"condition {self.name}: examples must be one of {', '.join(EXAMPLES)}")
        if self.teacher and (self.examples != "none" or self.summaries):
            raise ValueError(f"condition {self.name}: the teacher answers the prompt alone")
        if not self.sampled:
            object.__setattr__(self, "sampled", self.name)

    @property
    def prompt_format(self) -> str:
        """``chat`` (the teacher's chat template), ``zero-shot`` or ``in-context``."""
        if self.teacher:
            return "chat"
        return "zero-shot" if self.examples == "none" and not self.summaries else "in-context"

    @property
    def needs_embedder(self) -> bool:
        """Its examples are chosen by sentence vectors."""
        return self.examples == "knn"

    @property
    def needs_static_answers(self) -> bool:
        """Its examples are the teacher's answers to the fixed example questions."""
        return self.examples == "static"

    @property
    def needs_summaries(self) -> bool:
        return self.summaries

    @property
    def needs_teacher_answers(self) -> bool:
        """Its examples are the teacher's answers to other prompts of the set."""
        return self.examples in ("random", "knn")

    def greedy_twin(self) -> Condition:
        return replace(self, name=self.name + GREEDY_SUFFIX, greedy=True, sampled=self.name)


_CONDITIONS: dict[str, Condition] = {}


def register_condition(cond: Condition) -> tuple[Condition, Condition]:
    """Add a sampled condition and its greedy twin (``<name>-greedy``), in the study's order after
    those registered before; returns both."""
    if cond.greedy:
        raise ValueError(f"register the sampled condition; {cond.name}'s greedy twin comes with it")
    twin = cond.greedy_twin()
    for c in (cond, twin):
        if c.name in _CONDITIONS:
            raise ValueError(f"condition {c.name!r} is registered already")
    _CONDITIONS[cond.name] = cond
    _CONDITIONS[twin.name] = twin
    return cond, twin


@contextlib.contextmanager
def registered_condition(cond: Condition) -> Iterator[tuple[Condition, Condition]]:
    """Register ``cond`` (and its twin) while inside, then remove them (for tests and plug-ins)."""
    pair = register_condition(cond)
    try:
        yield pair
    finally:
        for c in pair:
            _CONDITIONS.pop(c.name, None)


for _c in (
    Condition(TEACHER, teacher=True, description="the aligned (chat) model, the teacher and reference"),
    Condition("base", description="the base model, zero-shot"),
    Condition("icl-static", "static", description="the base model with fixed examples the teacher answered"),
    Condition("icl-random", "random", description="the base model with random other prompts and their answers"),
    Condition("icl-knn", "knn", description="the base model with the nearest prompts and their answers"),
    Condition("icl-summary", "static", summaries=True, description="as icl-static, with summary hints of the answers"),
):
    register_condition(_c)


def conditions() -> tuple[Condition, ...]:
    """Every condition in the study's order: each sampled one, then its greedy twin."""
    return tuple(_CONDITIONS.values())


def condition(name: str) -> Condition:
    """The condition called ``name``; an unknown name is a one-line error listing the known ones."""
    found = _CONDITIONS.get(name)
    if found is None:
        raise ConfigError(f"unknown condition {name!r}; choose from {', '.join(_CONDITIONS)}")
    return found


def find(name: str) -> Condition | None:
    """The condition called ``name``, or None (a released set's label, say)."""
    return _CONDITIONS.get(name)


# The built-in names, as constants for readers of the study's files
BASE_SAMPLED = ("base", "icl-static", "icl-random", "icl-knn", "icl-summary")
SAMPLED = (TEACHER, *BASE_SAMPLED)
ALL_CONDITIONS = tuple(c.name for c in conditions())
ICL = ("icl-static", "icl-random", "icl-knn", "icl-summary")


def is_greedy(name: str) -> bool:
    found = find(name)
    return found.greedy if found is not None else name.endswith(GREEDY_SUFFIX)


def sampled_twin(name: str) -> str:
    found = find(name)
    return found.sampled if found is not None else name.removesuffix(GREEDY_SUFFIX)


def is_teacher(name: str) -> bool:
    found = find(name)
    return found.teacher if found is not None else sampled_twin(name) == TEACHER


def order_rank(name: str) -> int:
    """A set's place in the study's order (unknown names after every condition)."""
    names = list(_CONDITIONS)
    return names.index(name) if name in names else len(names)


def parse_conditions(value: str | None) -> tuple[str, ...]:
    """``"base,chat,icl-knn"`` -> the conditions in the study's canonical order; None -> all.

    The teacher's sampled answers feed every in-context condition and the reference of every
    comparison, so ``chat`` is always included; a greedy base condition brings ``chat-greedy``
    (its reference)."""
    names = tuple(_CONDITIONS)
    if value is None or value.strip() == "all":
        return names
    asked = [v.strip() for v in value.split(",") if v.strip()]
    if not asked:
        raise ConfigError(
            f"--conditions {value!r} names no condition; give some (e.g. base,chat,icl-knn) or leave it out for all"
        )
    unknown = [c for c in asked if c not in names]
    if unknown:
        raise ConfigError(f"--conditions: unknown condition(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    chosen = set(asked) | {TEACHER}
    if any(is_greedy(c) for c in chosen):
        chosen.add(TEACHER + GREEDY_SUFFIX)
    return tuple(c for c in names if c in chosen)


@dataclass(frozen=True)
class Preset:
    name: str
    limit: int | None
    samples: int
    max_tokens: int
    temperature: float = 0.5
    repetition_penalty: float = 1.1
    k: int = 3
    summary_max_tokens: int = 128
    description: str = ""
    # memory for live sequences beyond the weights when --max-memory is not given (None: tuning's
    # default, sized for the quick study's 2 GB peak)
    working_memory: int | None = None


PRESETS = {
    "paper": Preset(
        "paper",
        limit=None,
        samples=5,
        max_tokens=700,
        description="the paper's settings: every prompt, 5 samples, T=0.5, repetition penalty 1.1, 700 new tokens",
        # its in-context prompts need ~2.5k cells per sequence: 2 GiB lets the embedded base
        # model run 64+ sequences (1 GiB allowed 34; measured at 64, decode 1.2x faster)
        working_memory=2 * 2**30,
    ),
    "quick": Preset(
        "quick",
        limit=10,
        samples=5,
        max_tokens=128,
        description="a laptop-sized study: 10 prompts, 5 samples, 128 new tokens, the paper's sampler",
    ),
}
