"""Statistics for the tables and the classifier: ROC AUC (ties counted half), its bootstrap
interval and the ROC curve (scikit-learn); Wilson intervals for accuracies (statsmodels); exact
McNemar tests for paired comparisons of two methods on the same images, bootstrap intervals of
means, Spearman's rank correlation and the Wilcoxon signed-rank test (SciPy); Kendall's
coefficient of concordance W with a permutation test (our own: SciPy, scikit-learn and
statsmodels have none)."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from sklearn import metrics
from statsmodels.stats.proportion import proportion_confint


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties as ½
    (the Mann–Whitney U statistic over n_pos · n_neg)."""
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        # scikit-learn only warns and returns NaN.
        raise ValueError("AUC needs at least one positive and one negative image")
    return float(metrics.roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


def bootstrap_auc_ci(
    labels, scores, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUC, resampling images with replacement (resamples
    that miss a class are drawn again)."""
    # Resampled by hand: scipy.stats.bootstrap cannot draw a resample again, and a resample with
    # one class has no AUC.
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    rng = np.random.default_rng(seed)
    values = []
    while len(values) < n_boot:
        index = rng.integers(0, len(labels), len(labels))
        sample = labels[index]
        if sample.all() or not sample.any():
            continue
        values.append(roc_auc(sample, scores[index]))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate, threshold) at each distinct score, from the
    strictest threshold (+inf: nothing positive) down."""
    fpr, tpr, thresholds = metrics.roc_curve(
        np.asarray(labels).astype(bool),
        np.asarray(scores, dtype=np.float64),
        drop_intermediate=False,  # every distinct score, not only the curve's corners
    )
    return fpr, tpr, thresholds


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (default 95%) for a binomial proportion; NaN for n = 0."""
    if n == 0:
        return math.nan, math.nan
    low, high = proportion_confint(successes, n, alpha=1 - level, method="wilson")
    # Exact at the ends: rounding must not put 0 or 1 outside its own interval (statsmodels
    # gives 2.8e-17 for 0 of 7).
    low = 0.0 if successes == 0 else float(low)
    high = 1.0 if successes == n else float(high)
    return low, high


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs: images only method A got
    right, and images only method B got right (binomial test of only_a against n / 2)."""
    n = only_a + only_b
    if n == 0:  # no discordant pair: nothing tells the methods apart
        return 1.0
    return float(stats.binomtest(only_a, n, 0.5).pvalue)


def bootstrap_mean_ci(
    values, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval (default 95%) of the mean, resampling values with
    replacement; it stays inside the values' range, which a t interval of a bounded, skewed
    share need not. NaN for no values."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return math.nan, math.nan
    if len(values) == 1:  # every resample is the value itself; SciPy wants two
        return float(values[0]), float(values[0])
    interval = stats.bootstrap(
        (values,),
        np.mean,
        n_resamples=n_boot,
        confidence_level=level,
        method="percentile",
        rng=seed,
    ).confidence_interval
    return float(interval.low), float(interval.high)


def spearman(a, b) -> float:
    """Spearman's rank correlation of two equally long arrays (flattened), ties sharing their
    mean rank. NaN when either is constant (no ranking to correlate)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"spearman of {a.size} and {b.size} values")
    if np.ptp(a) == 0 or np.ptp(b) == 0:  # no ranking to correlate
        return math.nan
    # SciPy's ranks, but not spearmanr's correlation: its arithmetic gives 1 - 2e-16 for two
    # identical maps, and the randomisation test's unrandomised stage must read exactly 1.
    ra, rb = stats.rankdata(a), stats.rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    return float(np.clip(ra @ rb / math.sqrt(float(ra @ ra) * float(rb @ rb)), -1.0, 1.0))


def wilcoxon_signed_rank(a, b) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test of paired values ``a`` and ``b``
    (SciPy; zero differences dropped, as Wilcoxon's original test); 1 when every pair is
    equal, NaN for no pairs."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if len(diff) == 0:
        return math.nan
    if not np.any(diff != 0):  # nothing tells the methods apart
        return 1.0
    return float(stats.wilcoxon(diff, zero_method="wilcox").pvalue)


def _kendall_s(ranks: np.ndarray) -> np.ndarray:
    """S of Kendall's W: the squared deviations of the items' rank sums from their mean, summed;
    ``ranks`` (..., m raters, n items)."""
    sums = ranks.sum(axis=-2)
    return ((sums - sums.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1)


def _kendall_ranks(scores) -> tuple[np.ndarray, float]:
    """Each rater's ranks of the items (ties sharing their mean rank) and W's denominator with
    the tie correction: m^2 (n^3 - n) - m sum_j T_j, T_j = sum over rater j's ties of t^3 - t."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"Kendall's W of a {scores.ndim}-d array (raters x items)")
    m, n = scores.shape
    ranks = stats.rankdata(scores, axis=1)
    ties = 0.0
    for row in scores:
        _, counts = np.unique(row, return_counts=True)
        ties += float((counts**3 - counts).sum())
    return ranks, m * m * (n**3 - n) - m * ties


def kendall_w(scores) -> float:
    """Kendall's coefficient of concordance of m raters ranking n items (``scores``, m x n;
    rows ranked each, ties sharing their mean rank, with the tie correction): 1 when every
    rater ranks alike, 0 for no agreement. NaN when every rater ties every item."""
    ranks, denominator = _kendall_ranks(scores)
    if denominator <= 0:
        return math.nan
    return float(12 * _kendall_s(ranks) / denominator)


def kendall_w_permutation_p(
    scores, n_permutations: int, rng: np.random.Generator, chunk: int = 1000
) -> float:
    """One-sided permutation p-value of Kendall's W under no concordance: each rater's ranks
    shuffled independently across the items (their ties kept, so the denominator is fixed),
    p = (1 + #{S* >= S}) / (1 + n_permutations); drawn ``chunk`` permutations at a time."""
    ranks, denominator = _kendall_ranks(scores)
    if denominator <= 0 or n_permutations < 1:
        return math.nan
    observed = _kendall_s(ranks)
    m, n = ranks.shape
    at_least = 0
    for start in range(0, n_permutations, chunk):
        k = min(chunk, n_permutations - start)
        order = rng.permuted(np.broadcast_to(np.arange(n), (k, m, n)), axis=-1)
        shuffled = np.take_along_axis(np.broadcast_to(ranks, (k, m, n)), order, axis=-1)
        at_least += int((_kendall_s(shuffled) >= observed - 1e-9 * max(1.0, observed)).sum())
    return (1 + at_least) / (1 + n_permutations)
