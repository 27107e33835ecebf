"""The study's conditions (docs/method.md §4) and the presets that size a run.

``chat`` is the aligned teacher itself; the base model runs zero-shot (``base``) and in-context
(``icl-*``). Every sampled condition has a greedy twin (``<name>-greedy``: one sample at T=0).
"""

from __future__ import annotations

from dataclasses import dataclass

TEACHER = "chat"
BASE_SAMPLED = ("base", "icl-static", "icl-random", "icl-knn", "icl-summary")
SAMPLED = (TEACHER, *BASE_SAMPLED)
GREEDY_SUFFIX = "-greedy"
ALL_CONDITIONS = tuple(c for s in SAMPLED for c in (s, s + GREEDY_SUFFIX))
ICL = ("icl-static", "icl-random", "icl-knn", "icl-summary")


def is_greedy(condition: str) -> bool:
    return condition.endswith(GREEDY_SUFFIX)


def sampled_twin(condition: str) -> str:
    return condition.removesuffix(GREEDY_SUFFIX)


def is_teacher(condition: str) -> bool:
    return sampled_twin(condition) == TEACHER


def parse_conditions(value: str | None) -> tuple[str, ...]:
    """``"base,chat,icl-knn"`` -> the conditions in the study's canonical order; None -> all.

    The teacher's sampled answers feed every in-context condition and the reference of every
    comparison, so ``chat`` is always included; a greedy base condition brings ``chat-greedy``
    (its reference)."""
    from .errors import ConfigError

    if value is None or value.strip() == "all":
        return ALL_CONDITIONS
    asked = [v.strip() for v in value.split(",") if v.strip()]
    if not asked:
        raise ConfigError(
            f"--conditions {value!r} names no condition; give some (e.g. base,chat,icl-knn) or leave it out for all"
        )
    unknown = [c for c in asked if c not in ALL_CONDITIONS]
    if unknown:
        raise ConfigError(
            f"--conditions: unknown condition(s) {', '.join(unknown)}; choose from {', '.join(ALL_CONDITIONS)}"
        )
    chosen = set(asked) | {TEACHER}
    if any(is_greedy(c) for c in chosen):
        chosen.add(TEACHER + GREEDY_SUFFIX)
    return tuple(c for c in ALL_CONDITIONS if c in chosen)


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


PRESETS = {
    "paper": Preset(
        "paper",
        limit=None,
        samples=5,
        max_tokens=700,
        description="the paper's settings: every prompt, 5 samples, T=0.5, repetition penalty 1.1, 700 new tokens",
    ),
    "quick": Preset(
        "quick",
        limit=10,
        samples=5,
        max_tokens=128,
        description="a laptop-sized study: 10 prompts, 5 samples, 128 new tokens, the paper's sampler",
    ),
}
