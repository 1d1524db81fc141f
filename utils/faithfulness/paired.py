"""Paired comparisons of two configurations (CA vs GAP, one method vs another) scored on the same images.

The rows of one image under all seeds share the image's difficulty, so they are not independent: the image is the
unit of resampling (a cluster). The statistic is the mean of the paired differences over every (seed, image) pair
that both configurations scored; its 95% interval is the percentile interval of a cluster bootstrap (images drawn
with replacement, each with all its rows), its p-value the two-sided paired sign-flip permutation test (under the
null hypothesis of no difference, the sign of each image's differences is exchangeable; all rows of an image flip
together). With few images every sign pattern is enumerated and the p-value is exact.

    >>> result = paired_difference([0.4, 1.1, 0.3, 0.8], clusters=[0, 1, 2, 3])
    >>> round(result.mean, 3), result.p_value
    (0.65, 0.125)
"""
from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 10_000
_CHUNK = 2_000_000  # resample x cluster weights held at once (16 MB of float64)


@dataclass(frozen=True)
class PairedDifference:
    """The mean paired difference (other - baseline) with its interval and p-value."""

    mean: float
    ci_low: float
    ci_high: float
    p_value: float
    pairs: int
    clusters: int

    @property
    def significant(self) -> bool:
        """Whether the interval excludes 0."""
        return self.ci_low > 0 or self.ci_high < 0

    def as_dict(self) -> dict:
        return asdict(self)


def cluster_totals(differences: Sequence[float], clusters: Sequence[Hashable]) -> tuple[np.ndarray, np.ndarray]:
    """Each cluster's sum of differences and its number of rows, clusters in the order of their ids' text, so that
    the resampling (and so the interval) does not depend on the order the rows come in."""
    values = np.asarray(differences, dtype=np.float64)
    if values.ndim != 1 or len(values) != len(clusters):
        raise ValueError(f"paired_difference: {len(values)} differences for {len(clusters)} cluster ids; expected one "
                         f"cluster id per difference")
    if not np.isfinite(values).all():
        raise ValueError("paired_difference: a difference is not finite (NaN or inf)")
    ids = sorted({str(c) for c in clusters})
    code = {text: k for k, text in enumerate(ids)}
    codes = np.fromiter((code[str(c)] for c in clusters), dtype=np.int64, count=len(values))
    return np.bincount(codes, weights=values, minlength=len(ids)), np.bincount(codes, minlength=len(ids)).astype(float)


def bootstrap_interval(sums: np.ndarray, counts: np.ndarray, rng: np.random.Generator,
                       resamples: int = RESAMPLES, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of the pooled mean over clusters drawn with replacement (the ratio of the drawn sums to
    the drawn row counts, so clusters of unequal size weigh by their rows as in the point estimate)."""
    n = len(sums)
    statistics = []
    for start in range(0, resamples, max(1, _CHUNK // n)):
        size = min(resamples - start, max(1, _CHUNK // n))
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(np.float64)
        statistics.append(weights @ sums / (weights @ counts))
    tail = 100.0 * (1.0 - confidence) / 2
    low, high = np.percentile(np.concatenate(statistics), [tail, 100.0 - tail])
    return float(low), float(high)


def sign_flip_p_value(sums: np.ndarray, rng: np.random.Generator, permutations: int = RESAMPLES) -> float:
    """Two-sided p-value of the paired sign-flip test on cluster sums: exact over all 2^n sign patterns when that
    is no more than ``permutations``, else Monte Carlo with the observed pattern counted (never 0)."""
    n = len(sums)
    observed = abs(sums.sum())
    tolerance = 1e-12 * max(1.0, float(np.abs(sums).sum()))  # ties of the observed statistic count as extreme
    if n <= math.floor(math.log2(permutations)):
        patterns = ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1) * 2.0 - 1.0
        return float(np.mean(np.abs(patterns @ sums) >= observed - tolerance))
    extreme = 0
    for start in range(0, permutations, max(1, _CHUNK // n)):
        size = min(permutations - start, max(1, _CHUNK // n))
        signs = rng.integers(0, 2, size=(size, n)) * 2.0 - 1.0
        extreme += int(np.sum(np.abs(signs @ sums) >= observed - tolerance))
    return (extreme + 1) / (permutations + 1)


def paired_difference(differences: Sequence[float], clusters: Optional[Sequence[Hashable]] = None, *,
                      resamples: int = RESAMPLES, confidence: float = CONFIDENCE, seed: int = 0) -> PairedDifference:
    """Mean of ``differences`` (one per scored pair, other - baseline) with a cluster-bootstrap percentile interval
    and a sign-flip permutation p-value, both resampling whole ``clusters`` (the image of each pair; default: every
    pair its own cluster). Seeded: the same rows give the same interval."""
    clusters = list(range(len(differences))) if clusters is None else list(clusters)
    sums, counts = cluster_totals(differences, clusters)
    if len(sums) == 0:
        raise ValueError("paired_difference: no pair scored by both configurations")
    if not 0 < confidence < 1:
        raise ValueError(f"paired_difference: confidence {confidence} is outside (0, 1)")
    rng = np.random.default_rng(seed)
    low, high = bootstrap_interval(sums, counts, rng, resamples, confidence)
    p_value = sign_flip_p_value(sums, rng, resamples)
    return PairedDifference(float(sums.sum() / counts.sum()), low, high, p_value, int(counts.sum()), len(sums))
