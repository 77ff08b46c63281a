"""AUC, its bootstrap interval and the ROC curve against hand values and scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from xiqa.evaluation.metrics import bootstrap_auc_ci, roc_auc, roc_curve


def test_auc_by_hand_with_ties():
    labels = [0, 0, 1, 1, 0, 1]
    scores = [0.1, 0.4, 0.35, 0.8, 0.4, 0.4]
    # Positive-negative pairs won: 0.35 beats 0.1 (1); 0.8 beats all three (3);
    # 0.4 beats 0.1 (1) and ties both 0.4s (2 x 1/2). Total 6 of 9 pairs.
    assert roc_auc(labels, scores) == pytest.approx(6 / 9)
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))


def test_auc_matches_scikit_learn_on_random_scores():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.random(500) + 0.3 * labels, 2)  # rounding makes ties
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    with pytest.raises(ValueError, match="positive and one negative"):
        roc_auc([1, 1], [0.2, 0.3])


def test_roc_curve_matches_scikit_learn():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200) + 0.5 * labels, 1)
    fpr, tpr, thresholds = roc_curve(labels, scores)
    sk_fpr, sk_tpr, sk_thresholds = sk_roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thresholds[1:], sk_thresholds[1:])
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
