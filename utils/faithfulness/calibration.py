"""How confident a classifier is, beside how often it is right: the confidence metrics (AD / AI / AG) read the
class score, so two models of equal accuracy but different confidence get different explanation numbers.

* NLL: the mean negative log-likelihood of the true label (softmax; multi-label: the mean binary cross-entropy of
  every class's sigmoid score, classes with only difficult instances left out, as in AP).
* ECE: expected calibration error (Guo et al. 2017), equal-width bins of the confidence (the top-1 softmax
  score; multi-label: every class's sigmoid score against the class's presence), the bins' |accuracy - mean
  confidence| weighted by their share of the samples; in % like accuracy.
"""
from __future__ import annotations

import numpy as np

from utils.data import DIFFICULT, PRESENT

ECE_BINS = 15
CALIBRATION_DEFINITION = (f"NLL: mean negative log-likelihood of the true label (multi-label: mean binary "
                          f"cross-entropy over image-class pairs, difficult-only pairs left out); ECE (%): "
                          f"{ECE_BINS} equal-width confidence bins, sum of |accuracy - mean confidence| weighted by "
                          f"the bin's share (multi-label: every pair's sigmoid score against presence)")


def expected_calibration_error(confidences: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE (%) of confidences in [0, 1] and 0/1 outcomes; bin k holds confidences in (k/bins, (k+1)/bins]."""
    confidences = np.asarray(confidences, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=np.float64).ravel()
    if len(confidences) == 0 or len(confidences) != len(correct):
        raise ValueError(f"expected_calibration_error: {len(confidences)} confidences for {len(correct)} outcomes")
    which = np.clip(np.ceil(confidences * bins).astype(np.int64) - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, weights=correct, minlength=bins) -
                 np.bincount(which, weights=confidences, minlength=bins))
    return float(100.0 * gap.sum() / counts.sum())


def sigmoid_calibration(logits: np.ndarray, labels: np.ndarray) -> dict:
    """{"nll", "ece"} of multi-label logits (N, C) and label flags (N, C) (1 present, -1 absent, 0 difficult)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    kept = labels != DIFFICULT
    present = (labels == PRESENT).astype(np.float64)
    # log(sigmoid(x)) = -softplus(-x), log(1 - sigmoid(x)) = -softplus(x), stable for large |x|
    pair_nll = present * np.logaddexp(0.0, -logits) + (1.0 - present) * np.logaddexp(0.0, logits)
    scores = 1.0 / (1.0 + np.exp(-logits))
    return {"nll": float(pair_nll[kept].mean()), "ece": expected_calibration_error(scores[kept], present[kept])}
