"""Within-prompt lexical metrics of docs/method.md §5: word-bag Jaccard, length, length spread,
distinct prefixes, and the abstain / numbered-list / bullet-list rates.

A model's figure is the mean over prompts (rates: over responses), each with a 95% bootstrap
interval over prompts (``lite_align.stats``). Per-prompt values are kept beside the estimates, in
prompt-id order, NaN where a prompt has no value (e.g. no pair of samples).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, ClassVar

import numpy as np

from lite_align.data import SampleSet
from lite_align.metrics.registry import Family, FamilyValues, Inputs, Metric, register_family
from lite_align.stats import Estimate, mean_ci, ratio_ci
from lite_align.text import analyse

__all__ = [
    "ABSTAIN_PHRASES",
    "DiversityResult",
    "diversity",
    "has_bullet_list",
    "has_numbered_list",
    "is_abstain",
    "jaccard",
]

ABSTAIN_PHRASES = (
    "ai language model",
    "cannot have personal",
    "can't have personal",
    "don't have personal",
    "do not have personal",
    "cannot provide personal",
    "can't provide personal",
    "cannot condone",
    "can't condone",
)
PREFIX_CHARS = 20
_ABSTAIN = re.compile("|".join(map(re.escape, ABSTAIN_PHRASES)))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """|a ∩ b| / |a ∪ b|; NaN when both are empty (such a pair is skipped, never scored).

    >>> jaccard(frozenset("abc"), frozenset("bcd"))
    0.5
    """
    common = len(a & b)
    union = len(a) + len(b) - common
    return common / union if union else float("nan")


def is_abstain(text: str) -> bool:
    """The lower-cased text contains a refusal phrase.

    >>> is_abstain("As an AI language model, I cannot...")
    True
    >>> is_abstain("I can’t have personal opinions")  # a curly apostrophe is not the phrase
    False
    """
    return _ABSTAIN.search(text.lower()) is not None


# Lines are tested as they are, not stripped: an indented "  1. " or "   - " does not count.
# Unstripped lines reproduce every rate of REFERENCE.md's table to the fourth decimal; stripped ones
# come out higher (llama-2-base numbered 0.0028 / bullets 0.0023 against 0.0018 / 0.0018; the
# in-context runs' bullets 0.0014 and 0.0018 against 0.0009), so the reference did not strip.
def has_numbered_list(text: str) -> bool:
    """At least two lines starting "1. ", "2. ", ... in order (lower-cased, lines split on "\\n").

    >>> has_numbered_list("Pros:\\n1. cheap\\n2. fast")
    True
    >>> has_numbered_list("2. fast\\n1. cheap")  # the count must start at 1 and go up
    False
    >>> has_numbered_list("  1. indented\\n  2. lines")
    False
    """
    expected = 1
    for line in text.lower().split("\n"):
        if line.startswith(f"{expected}. "):
            expected += 1
    return expected > 2


def has_bullet_list(text: str) -> bool:
    """At least two lines starting "- ".

    >>> has_bullet_list("- one\\n- two")
    True
    >>> has_bullet_list("- one\\n-two")
    False
    """
    return sum(line.startswith("- ") for line in text.split("\n")) >= 2


@dataclass(frozen=True)
class DiversityResult:
    """Within-prompt figures of one sample set; per-prompt arrays follow ``prompt_ids``."""

    label: str
    jaccard_within: Estimate
    length_mean: Estimate
    length_spread: Estimate
    distinct_prefix_fraction: Estimate
    abstain_rate: Estimate
    numbered_list_rate: Estimate
    bullet_list_rate: Estimate
    n_prompts: int
    n_failed: int
    n_responses: int
    prompt_ids: tuple[int, ...] = ()
    per_prompt: Mapping[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)
    n_duplicates: int = 0  # repeated records read once (see readers); in to_json only when there are some

    METRICS: ClassVar[tuple[str, ...]] = (
        "jaccard_within",
        "length_mean",
        "length_spread",
        "abstain_rate",
        "numbered_list_rate",
        "bullet_list_rate",
        "distinct_prefix_fraction",
    )

    def to_json(self) -> dict[str, Any]:
        """A flat dict: every metric's value under its name, the counts, intervals under ``ci``."""
        out: dict[str, Any] = {"label": self.label}
        ci: dict[str, list[float | None]] = {}
        for name in self.METRICS:
            est: Estimate = getattr(self, name)
            out[name] = _number(est.mean)
            ci[name] = [_number(est.lo), _number(est.hi)]
        out.update(n_prompts=self.n_prompts, n_failed=self.n_failed, n_responses=self.n_responses, ci=ci)
        if self.n_duplicates:
            out["n_duplicates"] = self.n_duplicates
        return out


def _number(x: float) -> float | None:
    """JSON has no NaN: an undefined figure is null."""
    return None if np.isnan(x) else float(x)


def _prompt_figures(texts: tuple[str, ...], stem: bool, ngram: int) -> tuple[float, float, float, float, int, int, int]:
    """(jaccard, length mean, length spread, distinct-prefix fraction, abstains, numbered, bullets)."""
    analysed = [analyse(t, stem=stem, ngram=ngram) for t in texts]
    bags = [bag for bag, _ in analysed]
    lengths = [length for _, length in analysed]
    pairs = [jaccard(a, b) for a, b in combinations(bags, 2) if a or b]
    spreads = [abs(a - b) for a, b in combinations(lengths, 2)]
    nan = float("nan")
    return (
        sum(pairs) / len(pairs) if pairs else nan,
        sum(lengths) / len(lengths),
        sum(spreads) / len(spreads) if spreads else nan,
        len({t[:PREFIX_CHARS] for t in texts}) / len(texts),
        sum(map(is_abstain, texts)),
        sum(map(has_numbered_list, texts)),
        sum(map(has_bullet_list, texts)),
    )


def diversity(sample_set: SampleSet, *, stem: bool = False, ngram: int = 1) -> DiversityResult:
    """Every within-prompt metric of ``sample_set`` (prompts without responses are left out)."""
    ids = tuple(pid for pid in sample_set.prompt_ids() if sample_set.by_prompt[pid])
    rows = np.array([_prompt_figures(sample_set.by_prompt[pid], stem, ngram) for pid in ids], dtype=np.float64).reshape(
        len(ids), 7
    )
    n = np.array([len(sample_set.by_prompt[pid]) for pid in ids], dtype=np.float64)
    jac, length, spread, prefix, abstain, numbered, bullets = rows.T

    def over_prompts(values: np.ndarray) -> Estimate:
        return mean_ci(values[~np.isnan(values)])

    return DiversityResult(
        label=sample_set.label,
        jaccard_within=over_prompts(jac),
        length_mean=over_prompts(length),
        length_spread=over_prompts(spread),
        distinct_prefix_fraction=over_prompts(prefix),
        abstain_rate=ratio_ci(abstain, n),
        numbered_list_rate=ratio_ci(numbered, n),
        bullet_list_rate=ratio_ci(bullets, n),
        n_prompts=len(ids),
        n_failed=sample_set.n_failed,
        n_responses=int(n.sum()),
        n_duplicates=sample_set.n_duplicates,
        prompt_ids=ids,
        per_prompt={
            "jaccard_within": jac,
            "length_mean": length,
            "length_spread": spread,
            "distinct_prefix_fraction": prefix,
            "abstain": abstain,
            "numbered_list": numbered,
            "bullet_list": bullets,
            "n": n,
        },
    )


# --------------------------------------------------------------------------------------------------
# Registered: the paper's lexical measures, one family (its figures come first in a diversity row)

_LEXICAL_METRICS = (
    Metric(
        "jaccard_within",
        "word-bag Jaccard within prompt",
        direction=-1,
        terminal_label="word-bag Jaccard (within prompt) ↓",
        order=10,
        glance="Jacc.\n↓div",
        finding="word-bag Jaccard",
    ),
    Metric(
        "distinct_prefix_fraction",
        "distinct 20-char prefixes",
        direction=1,
        order=30,
        finding="distinct prefixes",
    ),
    Metric(
        "length_mean",
        "length (words)",
        digits=1,
        hint="mean words per answer",
        terminal_label="length (words)",
        order=40,
        glance="words\n",
        glance_digits=0,
    ),
    Metric(
        "length_spread",
        "length spread (words)",
        digits=1,
        hint="mean |difference| between two answers",
        terminal_label="length spread",
        order=50,
    ),
    Metric("abstain_rate", "abstain rate", hint="share of answers", order=60),
    Metric("numbered_list_rate", "numbered-list rate", hint="share of answers", order=70),
    Metric("bullet_list_rate", "bullet-list rate", hint="share of answers", order=80),
)
# per-prompt values for compare: the means, then the rates as shares of each prompt's answers
_MEANS = ("jaccard_within", "length_mean", "length_spread", "distinct_prefix_fraction")
_RATES = {"abstain_rate": "abstain", "numbered_list_rate": "numbered_list", "bullet_list_rate": "bullet_list"}


def _lexical_family(sample_set: SampleSet, inputs: Inputs) -> FamilyValues:
    d = diversity(sample_set)
    ids, per = d.prompt_ids, d.per_prompt
    per_prompt: dict[str, dict[int, float]] = {}
    for key in _MEANS:
        per_prompt[key] = {pid: float(v) for pid, v in zip(ids, per[key], strict=True) if not np.isnan(v)}
    for key, count in _RATES.items():
        per_prompt[key] = {pid: float(c / n) for pid, c, n in zip(ids, per[count], per["n"], strict=True) if n}
    return FamilyValues({name: getattr(d, name) for name in d.METRICS}, per_prompt)


register_family(Family("lexical", _LEXICAL_METRICS, needs=frozenset({"texts", "word_bags"}), compute=_lexical_family))
