"""Statistics for the tables: Wilson intervals for accuracies, exact McNemar tests for paired
comparisons of two methods on the same images, bootstrap intervals of means, and Spearman's rank
correlation."""

from __future__ import annotations

import math

import numpy as np

from xiqa.evaluation.metrics import average_ranks


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval (default 95%) for a binomial proportion."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # Exact at the ends: rounding must not put 0 or 1 outside its own interval.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs: images only method A got
    right, and images only method B got right (binomial test of only_a against n / 2)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def bootstrap_mean_ci(
    values, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval (default 95%) of the mean, resampling values with
    replacement; it stays inside the values' range, which a t interval of a bounded, skewed
    share need not. NaN for no values."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def spearman(a, b) -> float:
    """Spearman's rank correlation of two equally long arrays (flattened): the Pearson
    correlation of their average ranks (ties share their mean rank). NaN when either is
    constant (no ranking to correlate)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"spearman of {a.size} and {b.size} values")
    ra, rb = average_ranks(a), average_ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    norm = math.sqrt(float(ra @ ra) * float(rb @ rb))
    if norm == 0:
        return math.nan
    return float(np.clip(ra @ rb / norm, -1.0, 1.0))
