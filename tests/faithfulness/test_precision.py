"""Average precision of multi-label scores: the VOC devkit's all-point interpolated AP (the default) against a
transcription of VOCevalcls, scikit-learn's definition against scikit-learn, VOC's exclusion of difficult-only
images, mAP over the classes with a positive."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from utils.faithfulness import average_precision, class_average_precision, mean_average_precision


def test_average_precision_equals_scikit_learn_with_ties_and_difficult_images_left_out():
    rng = np.random.default_rng(0)
    compared = 0
    for _ in range(200):
        n, classes = int(rng.integers(2, 80)), 5
        # coarse float32 scores: many ties, which form one threshold each
        scores = np.round(rng.uniform(size=(n, classes)), int(rng.integers(1, 3))).astype(np.float32)
        labels = rng.choice([1, -1, 0], size=(n, classes), p=[0.3, 0.6, 0.1])
        ours = class_average_precision(scores, labels, "sklearn")
        for c in range(classes):
            kept = labels[:, c] != 0
            if not (labels[kept, c] == 1).any():
                assert ours[c] is None
                continue
            expected = average_precision_score(labels[kept, c] == 1, scores[kept, c])
            assert ours[c] == pytest.approx(expected, abs=1e-6)
            compared += 1
    assert compared > 800


def test_average_precision_in_closed_form():
    # ranked: +, -, +, (difficult: ignored), - -> precision 1 at recall 1/2, 2/3 at recall 1: AP = (1 + 2/3) / 2
    scores = np.array([0.9, 0.8, 0.7, 0.65, 0.6])
    labels = np.array([1, -1, 1, 0, -1])
    assert average_precision(scores, labels, "sklearn") == pytest.approx(5 / 6, abs=1e-12)
    assert average_precision(scores, labels) == pytest.approx(5 / 6, abs=1e-12)
    # a tie between a positive and a negative is one threshold: precision 1/2 for both positives at once
    tied = np.array([0.5, 0.5, 0.1]), np.array([1, -1, 1])
    assert average_precision(*tied, "sklearn") == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    # ranked -, +, +: sklearn takes precision 1/2 at recall 1/2, the devkit the best precision at recall >= 1/2 (2/3)
    ranked = np.array([0.9, 0.8, 0.7]), np.array([-1, 1, 1])
    assert average_precision(*ranked, "sklearn") == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert average_precision(*ranked) == pytest.approx(2 / 3)
    assert average_precision(scores, -np.ones(5, dtype=int)) is None
    assert mean_average_precision([0.5, None, 1.0]) == pytest.approx(0.75)
    assert mean_average_precision([None]) is None
    with pytest.raises(ValueError, match="one shape"):
        class_average_precision(np.zeros((3, 2)), np.zeros((3, 3)))


def devkit_ap(scores: np.ndarray, labels: np.ndarray) -> float:
    """VOCevalcls + VOCap of the VOC2012 devkit, line by line: rank, cumulative tp/fp (difficult neither), then
    the area under the monotone precision envelope."""
    order = np.argsort(-scores, kind="stable")
    gt = labels[order]
    tp, fp = np.cumsum(gt > 0), np.cumsum(gt < 0)
    rec = tp / np.sum(gt > 0)
    with np.errstate(invalid="ignore"):
        prec = tp / (fp + tp)
    mrec, mpre = np.r_[0, rec, 1], np.r_[0, np.nan_to_num(prec), 0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def test_voc_average_precision_equals_the_devkit_and_reads_above_scikit_learn():
    rng = np.random.default_rng(1)
    gaps = []
    for _ in range(200):
        n = int(rng.integers(2, 80))
        scores = rng.normal(size=n)
        labels = rng.choice([1, -1, 0], size=n, p=[0.3, 0.6, 0.1])
        scores[labels == 1] += 0.8
        ours = average_precision(scores, labels)
        if not (labels == 1).any():
            assert ours is None
            continue
        assert ours == pytest.approx(devkit_ap(scores, labels), abs=1e-12)
        gaps.append(ours - average_precision(scores, labels, "sklearn"))
    assert min(gaps) >= -1e-12 and np.mean(gaps) > 0  # interpolation never lowers AP
    with pytest.raises(ValueError, match="--ap auc: expected one of voc, sklearn"):
        average_precision(scores, labels, "auc")
