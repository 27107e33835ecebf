"""Plain data passed between the steps: prompts, samples, sample sets.

Everything here is a frozen dataclass or a tuple, so each step can be tested alone and rerun from
what the store holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: registry name, role, file (or, for a served model, the id that stands for
    one: ``generation.Backend.locate``), its backend and the settings it is opened with."""

    name: str
    role: str
    path: str
    family: str = ""
    backend: str = "llama.cpp"
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Prompt:
    """One prompt of a set. ``id`` is its index in the set (the paper's convention)."""

    id: int
    text: str


@dataclass(frozen=True)
class PromptSet:
    name: str
    prompts: tuple[Prompt, ...]
    source: str  # file path or "builtin:<name>"
    sha256: str  # of the prompt texts, in order (see readers.prompt_set_hash)

    def __len__(self) -> int:
        return len(self.prompts)

    def texts(self) -> list[str]:
        return [p.text for p in self.prompts]


@dataclass(frozen=True)
class Sample:
    """One generated answer, exactly as stored in a run's samples JSONL (one object per line)."""

    prompt_id: int
    condition: str
    model: str
    sample_index: int
    seed: int
    text: str
    completion_tokens: int
    finish_reason: str  # "stop" | "length" | "error"
    seconds: float
    prompt_tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt_id": self.prompt_id,
            "condition": self.condition,
            "model": self.model,
            "sample_index": self.sample_index,
            "seed": self.seed,
            "text": self.text,
            "completion_tokens": self.completion_tokens,
            "prompt_tokens": self.prompt_tokens,
            "finish_reason": self.finish_reason,
            "seconds": round(self.seconds, 4),
        }


def failure_text(reasons: Mapping[str, int]) -> str:
    """Failure reasons and their counts, most frequent first, for messages and reports.

    >>> failure_text({"request failed": 1, "validation error": 3})
    'validation error ×3, request failed ×1'
    """
    ranked = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{reason} ×{n}" for reason, n in ranked)


@dataclass(frozen=True)
class SampleSet:
    """The responses of one model/condition over a prompt set, aligned by prompt id.

    ``by_prompt`` maps prompt id -> responses in sample order (already normalised). A prompt any
    of whose outputs failed is absent, counted in ``n_failed``, and its reason (e.g. "validation
    error", "request failed") counted in ``failed_reasons``. This is what every metric takes.
    """

    label: str
    by_prompt: Mapping[int, tuple[str, ...]]
    source: str = ""
    n_failed: int = 0
    prompts: Mapping[int, str] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    failed_reasons: Mapping[str, int] = field(default_factory=dict)
    n_duplicates: int = 0  # records repeated with the same text in the file, each read once

    @property
    def n_prompts(self) -> int:
        return len(self.by_prompt)

    @property
    def n_responses(self) -> int:
        return sum(len(v) for v in self.by_prompt.values())

    def prompt_ids(self) -> list[int]:
        return sorted(self.by_prompt)

    def failures_json(self) -> dict[str, Any]:
        """``n_failed`` and ``failed_reasons``, as every --json row carries them."""
        return {"n_failed": self.n_failed, "failed_reasons": dict(self.failed_reasons)}
