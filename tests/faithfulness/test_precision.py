"""Average precision of multi-label scores: scikit-learn's definition per class, VOC's exclusion of difficult-only
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
        ours = class_average_precision(scores, labels)
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
    assert average_precision(scores, labels) == pytest.approx(5 / 6, abs=1e-12)
    # a tie between a positive and a negative is one threshold: precision 1/2 for both positives at once
    assert average_precision(np.array([0.5, 0.5, 0.1]), np.array([1, -1, 1])) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert average_precision(scores, -np.ones(5, dtype=int)) is None
    assert mean_average_precision([0.5, None, 1.0]) == pytest.approx(0.75)
    assert mean_average_precision([None]) is None
    with pytest.raises(ValueError, match="one shape"):
        class_average_precision(np.zeros((3, 2)), np.zeros((3, 3)))
