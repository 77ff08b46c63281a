"""Classification metrics: ROC AUC (ties counted half), its bootstrap confidence interval and
the ROC curve."""

from __future__ import annotations

import numpy as np


def average_ranks(scores: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``scores``, tied scores sharing their average rank."""
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties as ½
    (the Mann–Whitney U statistic over n_pos · n_neg)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs at least one positive and one negative image")
    rank_sum = average_ranks(scores)[labels].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def bootstrap_auc_ci(
    labels, scores, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUC, resampling images with replacement (resamples
    that miss a class are drawn again)."""
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
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    tps = np.cumsum(hits)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    fpr = np.r_[0.0, fps / max(1, (~labels).sum())]
    tpr = np.r_[0.0, tps / max(1, labels.sum())]
    return fpr, tpr, np.r_[np.inf, ranked[last_of_tie]]
