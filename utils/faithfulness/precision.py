"""Average precision of multi-label class scores: how a multi-label model is scored (training's log, recognition's
report).

Two definitions of one class's AP, named by :data:`AP_DEFINITIONS`:

* ``voc`` (the default, what published VOC numbers use): the VOC devkit's ``VOCevalcls`` since VOC2010, all-point
  interpolated: precision made monotone (at each recall, the best precision at that recall or beyond), integrated
  over the recall steps; images ranked one by one (ties in list order, as the devkit's sort).
* ``sklearn``: scikit-learn's ``average_precision_score``, non-interpolated: the sum over score thresholds (tied
  scores form one threshold) of the precision at that threshold times the recall it adds; it reads lower than the
  devkit's on continuous scores (never higher; mAP 0.01 and 0.55 points lower for the GAP and CA models of
  seed 0 of the built-in multi-label comparison).

In both, as in the devkit, images whose only instances of the class are difficult (label 0) are left out of that
class's AP. mAP is the mean of AP over the classes with at least one positive image.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from utils.data import DIFFICULT, PRESENT

VOC_AP = "voc"
AP_DEFINITIONS = {
    VOC_AP: "per class, the VOC devkit's all-point interpolated AP (VOC2010+: the area under the precision-recall "
            "curve with precision made monotone), images ranked by the class logit",
    "sklearn": "per class, scikit-learn's average_precision_score (non-interpolated: precision at each distinct "
               "score times the recall it adds), images ranked by the class logit",
}
_SHARED_DEFINITION = ("; images whose only instances of the class are difficult are left out of its AP (VOC); mAP: "
                      "the mean over classes with a positive image")


def describe_ap(definition: str) -> str:
    """The protocol card's sentence for an AP definition."""
    return AP_DEFINITIONS[check_ap_definition(definition)] + _SHARED_DEFINITION


def check_ap_definition(definition: str) -> str:
    if definition not in AP_DEFINITIONS:
        raise ValueError(f"--ap {definition}: expected one of {', '.join(AP_DEFINITIONS)}")
    return definition


def average_precision(scores: np.ndarray, labels: np.ndarray, definition: str = VOC_AP) -> Optional[float]:
    """AP in [0, 1] of one class from scores (N,) and label flags (N,): 1 present, -1 absent, 0 only difficult
    instances (left out), by ``definition`` (``voc`` or ``sklearn``). None when no image has the class."""
    check_ap_definition(definition)
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    kept = labels != DIFFICULT
    scores, positive = scores[kept], labels[kept] == PRESENT
    positives = int(positive.sum())
    if positives == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    scores, positive = scores[order], positive[order]
    if definition == VOC_AP:
        recall = np.r_[0.0, np.cumsum(positive) / positives, 1.0]
        precision = np.r_[0.0, np.cumsum(positive) / np.arange(1, len(positive) + 1), 0.0]
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        steps = np.flatnonzero(recall[1:] != recall[:-1])
        return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))
    # one threshold per distinct score: the last position of each run of tied scores
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(positive)[last]
    precision = true_positives / (last + 1)
    recall_gained = np.diff(np.r_[0, true_positives]) / positives
    return float(np.sum(precision * recall_gained))


def class_average_precision(scores: np.ndarray, labels: np.ndarray, definition: str = VOC_AP
                            ) -> list[Optional[float]]:
    """AP of every class (column) of scores (N, C) and label vectors (N, C)."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.shape != labels.shape or scores.ndim != 2:
        raise ValueError(f"expected scores and labels of one shape (N, C), got {scores.shape} and {labels.shape}")
    return [average_precision(scores[:, c], labels[:, c], definition) for c in range(scores.shape[1])]


def mean_average_precision(class_ap: Sequence[Optional[float]]) -> Optional[float]:
    """The mean over the classes that have an AP (None when none has)."""
    values = [ap for ap in class_ap if ap is not None]
    return float(np.mean(values)) if values else None
