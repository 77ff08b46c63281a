"""The statistics against hand-worked values and slow, obviously correct oracles: AUC, its
bootstrap interval, the ROC curve, Wilson intervals, exact McNemar tests, bootstrap intervals of
a mean and Spearman's correlation."""

import math

import numpy as np
import pytest

from xiqa.evaluation.stats import (
    bootstrap_auc_ci,
    bootstrap_mean_ci,
    mcnemar_exact,
    roc_auc,
    roc_curve,
    spearman,
    wilson_interval,
)


def _pairwise_auc(labels, scores) -> float:
    """Oracle: the share of positive-negative pairs the positive wins, ties as half."""
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, dtype=float)
    pos, neg = scores[labels], scores[~labels]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def _average_ranks(values) -> np.ndarray:
    """Oracle: rank 1 + the number of smaller values, ties sharing their mean rank."""
    values = np.asarray(values, dtype=float).ravel()
    return np.array([(values < v).sum() + ((values == v).sum() + 1) / 2 for v in values])


def test_auc_by_hand_with_ties():
    labels = [0, 0, 1, 1, 0, 1]
    scores = [0.1, 0.4, 0.35, 0.8, 0.4, 0.4]
    # Positive-negative pairs won: 0.35 beats 0.1 (1); 0.8 beats all three (3);
    # 0.4 beats 0.1 (1) and ties both 0.4s (2 x 1/2). Total 6 of 9 pairs.
    assert roc_auc(labels, scores) == pytest.approx(6 / 9)
    assert roc_auc(labels, scores) == pytest.approx(_pairwise_auc(labels, scores))


def test_auc_matches_the_pairwise_count_on_random_scores():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.random(500) + 0.3 * labels, 2)  # rounding makes ties
    assert roc_auc(labels, scores) == pytest.approx(_pairwise_auc(labels, scores), abs=1e-12)
    with pytest.raises(ValueError, match="positive and one negative"):
        roc_auc([1, 1], [0.2, 0.3])


def test_roc_curve_by_hand_and_at_every_threshold():
    # Distinct scores 0.8, 0.4, 0.35, 0.1 (3 positives, 3 negatives): at >= 0.8 one positive;
    # at >= 0.4 two positives and two negatives; at >= 0.35 all positives; then everything.
    fpr, tpr, thresholds = roc_curve([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.4, 0.4])
    np.testing.assert_allclose(fpr, [0, 0, 2 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 1, 1])
    np.testing.assert_array_equal(thresholds, [np.inf, 0.8, 0.4, 0.35, 0.1])
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200).astype(bool)
    scores = np.round(rng.random(200) + 0.5 * labels, 1)
    fpr, tpr, thresholds = roc_curve(labels, scores)
    np.testing.assert_array_equal(thresholds[1:], np.unique(scores)[::-1])
    called = scores[None, :] >= thresholds[:, None]  # oracle: count at each threshold
    np.testing.assert_allclose(fpr, (called & ~labels).sum(1) / (~labels).sum())
    np.testing.assert_allclose(tpr, (called & labels).sum(1) / labels.sum())
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(labels, scores))


def test_bootstrap_interval_brackets_the_auc_and_shrinks_with_n():
    rng = np.random.default_rng(2)

    def sample(n):
        labels = rng.integers(0, 2, n)
        return labels, rng.normal(labels * 1.0, 1.0)

    small, large = sample(100), sample(2000)
    low_s, high_s = bootstrap_auc_ci(*small, n_boot=500)
    low_l, high_l = bootstrap_auc_ci(*large, n_boot=500)
    assert low_s < roc_auc(*small) < high_s
    assert low_l < roc_auc(*large) < high_l
    assert high_l - low_l < (high_s - low_s) / 2  # about 1/sqrt(20) as wide
    assert bootstrap_auc_ci(*small, n_boot=200, seed=3) == bootstrap_auc_ci(
        *small, n_boot=200, seed=3
    )


def test_bootstrap_interval_of_a_mean():
    assert bootstrap_mean_ci([0.3] * 10) == pytest.approx((0.3, 0.3), abs=1e-15)
    assert all(math.isnan(v) for v in bootstrap_mean_ci([]))
    # Half zeros, half ones, n = 400: mean 0.5, standard error 0.025; the percentile interval
    # is close to 0.5 -/+ 1.96 * 0.025 = (0.451, 0.549).
    low, high = bootstrap_mean_ci([0.0, 1.0] * 200)
    assert low == pytest.approx(0.451, abs=0.006) and high == pytest.approx(0.549, abs=0.006)
    assert bootstrap_mean_ci([0.0, 1.0] * 200) == (low, high)  # seeded
    low, high = bootstrap_mean_ci([0.0, 0.0, 0.0, 1.0])
    assert 0.0 <= low < 0.25 < high <= 1.0


def test_wilson_interval_by_hand():
    # p = 0.8, n = 10, z = 1.96: centre 0.7167, half-width 0.2266.
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and round(high, 4) == 0.2775
    for n in (1, 3, 7, 150, 151, 500):  # the ends are exact, never beside the accuracy
        assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0
    assert wilson_interval(50, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)


def test_mcnemar_exact_by_hand():
    # 1 vs 9 discordant pairs: 2 * P(X <= 1 | n=10, p=1/2) = 2 * 11 / 1024.
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_exact(9, 1) == pytest.approx(22 / 1024)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)


def test_spearman_by_hand():
    # b's ranks: 1, 2, 3.5, 5, 3.5 (the two 7s share 3.5). Centred: a -2 -1 0 1 2,
    # b -2 -1 0.5 2 0.5; sum of products 8, sums of squares 10 and 9.5: r = 8 / sqrt(95).
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(8 / math.sqrt(95), abs=1e-15)
    assert spearman([1, 2, 3], [30, 20, 10]) == -1.0
    assert spearman([[1, 4], [9, 16]], [1, 2, 3, 4]) == 1.0  # flattened, monotone
    assert math.isnan(spearman([2, 2, 2], [1, 2, 3]))  # a constant map has no ranking
    x = np.random.default_rng(0).random(1000)
    assert spearman(x, x) == 1.0  # exactly, not 0.9999999999999998


def test_spearman_equals_the_correlation_of_average_ranks_with_ties():
    rng = np.random.default_rng(1)
    for _ in range(5):
        a = np.round(rng.random(400), 1)  # about 10 values: heavy ties
        b = np.round(a + rng.normal(0, 0.3, 400), 2)
        oracle = np.corrcoef(_average_ranks(a), _average_ranks(b))[0, 1]
        assert spearman(a, b) == pytest.approx(oracle, abs=1e-12)
