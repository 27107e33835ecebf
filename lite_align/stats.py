"""Bootstrap intervals over prompts.

The study's unit of resampling is the prompt: every interval here resamples prompts with
replacement (seeded, so a report is reproducible) and reads the 2.5th and 97.5th percentiles.

    >>> mean_ci([1.0, 2.0, 3.0]).mean
    2.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

N_BOOT = 1000
SEED = 20250429  # fixed: the same data always gives the same interval


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a 95% bootstrap interval (``lo``/``hi`` are NaN when n < 2)."""

    mean: float
    lo: float
    hi: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "lo": self.lo, "hi": self.hi, "n": self.n}


def _percentiles(boot: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.nanpercentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def mean_ci(
    values: Sequence[float] | np.ndarray, *, n_boot: int = N_BOOT, seed: int = SEED, alpha: float = 0.05
) -> Estimate:
    """Mean over prompts with a percentile bootstrap interval over prompts."""
    x = np.asarray(values, dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    mean = float(x.mean())
    if n < 2:
        return Estimate(mean, float("nan"), float("nan"), n)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    lo, hi = _percentiles(x[idx].mean(axis=1), alpha)
    return Estimate(mean, lo, hi, n)


def ratio_ci(
    numerator: Sequence[float] | np.ndarray,
    denominator: Sequence[float] | np.ndarray,
    *,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    alpha: float = 0.05,
) -> Estimate:
    """sum(numerator) / sum(denominator) with a *paired* bootstrap over prompts.

    Used for rates (responses with a property / responses, per prompt) and for the recovery
    ratio (mean cross / mean baseline over the same prompts): both members of a pair are
    resampled together, so the interval reflects their correlation.
    """
    a = np.asarray(numerator, dtype=np.float64)
    b = np.asarray(denominator, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError("numerator and denominator must be paired (same length)")
    n = int(a.size)
    total = float(b.sum())
    if n == 0 or total == 0.0:
        return Estimate(float("nan"), float("nan"), float("nan"), n)
    point = float(a.sum()) / total
    if n < 2:
        return Estimate(point, float("nan"), float("nan"), n)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    den = b[idx].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = np.where(den != 0, a[idx].sum(axis=1) / den, np.nan)
    lo, hi = _percentiles(boot, alpha)
    return Estimate(point, lo, hi, n)


def diff_ci(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    alpha: float = 0.05,
) -> Estimate:
    """Paired difference mean(a - b) over the same prompts, with a bootstrap interval."""
    x = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return mean_ci(x, n_boot=n_boot, seed=seed, alpha=alpha)
