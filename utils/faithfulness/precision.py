"""Average precision of multi-label class scores: how a multi-label model is scored (training's log, recognition's
report).

AP of one class is scikit-learn's ``average_precision_score``: non-interpolated, the sum over score thresholds
(tied scores form one threshold) of the precision at that threshold times the recall it adds. As in VOC's
``VOCevalcls``, images whose only instances of the class are difficult (label 0) are left out of that class's AP.
mAP is the mean of AP over the classes with at least one positive image.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from utils.data import DIFFICULT, PRESENT


def average_precision(scores: np.ndarray, labels: np.ndarray) -> Optional[float]:
    """AP in [0, 1] of one class from scores (N,) and label flags (N,): 1 present, -1 absent, 0 only difficult
    instances (left out). None when no image has the class."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    kept = labels != DIFFICULT
    scores, positive = scores[kept], labels[kept] == PRESENT
    positives = int(positive.sum())
    if positives == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    scores, positive = scores[order], positive[order]
    # one threshold per distinct score: the last position of each run of tied scores
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(positive)[last]
    precision = true_positives / (last + 1)
    recall_gained = np.diff(np.r_[0, true_positives]) / positives
    return float(np.sum(precision * recall_gained))


def class_average_precision(scores: np.ndarray, labels: np.ndarray) -> list[Optional[float]]:
    """AP of every class (column) of scores (N, C) and label vectors (N, C)."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.shape != labels.shape or scores.ndim != 2:
        raise ValueError(f"expected scores and labels of one shape (N, C), got {scores.shape} and {labels.shape}")
    return [average_precision(scores[:, c], labels[:, c]) for c in range(scores.shape[1])]


def mean_average_precision(class_ap: Sequence[Optional[float]]) -> Optional[float]:
    """The mean over the classes that have an AP (None when none has)."""
    values = [ap for ap in class_ap if ap is not None]
    return float(np.mean(values)) if values else None
