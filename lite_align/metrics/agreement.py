"""Metric agreement: Spearman's rank correlation, over prompts, between every pair of measures.

Two measures that rank the prompts of a run (or of a release file) the same way tell the same
story; a low or negative correlation means they see different things. For each pair, the prompts
where both have a value are ranked (ties get the mean of their ranks) and Pearson's correlation
of the ranks is taken; it is undefined (NaN) with fewer than ``MIN_PROMPTS`` such prompts or when
one measure is constant on them.

Measures point in different directions (a higher Self-BLEU means *less* diverse). Given each
measure's direction, ``agreement_table`` turns the "less diverse" ones around first, so that a
positive correlation always means "the two measures agree on which prompts are more diverse".

    >>> spearman([1, 2, 3, 4], [10, 20, 30, 40]), spearman([1, 2, 3, 4], [4, 3, 2, 1])
    (1.0, -1.0)
    >>> average_ranks(np.array([10.0, 20.0, 10.0, 30.0])).tolist()
    [1.5, 3.0, 1.5, 4.0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MIN_PROMPTS", "AgreementTable", "agreement_table", "average_ranks", "spearman"]

MIN_PROMPTS = 3


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``x``, tied values sharing the mean of their ranks."""
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], n]
    mean_rank = (starts + ends + 1) / 2.0  # ranks starts+1 .. ends, averaged
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman's rho over the positions where both are finite; NaN when undefined."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired values needed, got {x.shape} and {y.shape}")
    both = np.isfinite(x) & np.isfinite(y)
    if both.sum() < MIN_PROMPTS:
        return float("nan")
    rx, ry = average_ranks(x[both]), average_ranks(y[both])
    rx -= rx.mean()
    ry -= ry.mean()
    denominator = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    if denominator == 0:
        return float("nan")
    return float(np.clip((rx * ry).sum() / denominator, -1.0, 1.0))


@dataclass(frozen=True)
class AgreementTable:
    """``rho[i][j]``: Spearman's rho of measures ``keys[i]`` and ``keys[j]`` over the ``n[i][j]``
    prompts where both have a value (oriented: see ``oriented``)."""

    keys: tuple[str, ...]
    rho: np.ndarray
    n: np.ndarray
    oriented: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "keys": list(self.keys),
            "rho": [[None if np.isnan(v) else round(float(v), 6) for v in row] for row in self.rho],
            "n": self.n.astype(int).tolist(),
            "oriented": self.oriented,
        }


def agreement_table(
    per_prompt: Mapping[str, Sequence[float] | np.ndarray],
    higher_is_more_diverse: Mapping[str, bool] | None = None,
) -> AgreementTable:
    """Spearman's rho between every pair of the given per-prompt series (all aligned on the same
    prompts). With ``higher_is_more_diverse`` (a direction for every key), measures where higher
    means less diverse are negated first."""
    keys = tuple(per_prompt)
    series = [np.asarray(per_prompt[k], dtype=np.float64) for k in keys]
    lengths = {s.shape for s in series}
    if len(lengths) > 1:
        raise ValueError(f"per-prompt series of different lengths: {sorted(lengths)}")
    if higher_is_more_diverse is not None:
        missing = [k for k in keys if k not in higher_is_more_diverse]
        if missing:
            raise ValueError(f"no direction given for {', '.join(missing)}")
        series = [s if higher_is_more_diverse[k] else -s for k, s in zip(keys, series, strict=True)]
    m = len(keys)
    rho = np.full((m, m), np.nan)
    n = np.zeros((m, m), dtype=np.int64)
    finite = [np.isfinite(s) for s in series]
    for i in range(m):
        for j in range(i, m):
            n[i, j] = n[j, i] = int((finite[i] & finite[j]).sum())
            rho[i, j] = rho[j, i] = spearman(series[i], series[j])
    return AgreementTable(keys=keys, rho=rho, n=n, oriented=higher_is_more_diverse is not None)
