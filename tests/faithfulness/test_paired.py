"""Tests of utils/faithfulness/paired.py on synthetic rows with a known shift: the exact sign-flip p-value against
scipy's permutation test, the bootstrap interval against scipy's and against the normal closed form, coverage of the
true shift, and the clustering (rows of one image resampled together)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from utils.faithfulness.paired import paired_difference


def test_exact_p_value_equals_scipy_permutation_test() -> None:
    rng = np.random.default_rng(1)
    differences = rng.normal(0.3, 1.0, size=9)
    result = paired_difference(differences)
    # every 2^9 sign pattern: scipy's exact paired ("samples") permutation test of the mean difference
    expected = stats.permutation_test((differences, np.zeros_like(differences)),
                                      lambda x, y, axis: np.mean(x - y, axis=axis), permutation_type="samples",
                                      n_resamples=np.inf, alternative="two-sided").pvalue
    assert result.p_value == pytest.approx(expected, rel=1e-12)
    assert result.mean == pytest.approx(differences.mean())
    assert (result.pairs, result.clusters) == (9, 9)


def test_monte_carlo_p_value_is_close_to_scipy_and_never_zero() -> None:
    rng = np.random.default_rng(2)
    differences = rng.normal(0.15, 1.0, size=120)
    result = paired_difference(differences, resamples=20_000)
    expected = stats.permutation_test((differences, np.zeros_like(differences)),
                                      lambda x, y, axis: np.mean(x - y, axis=axis), permutation_type="samples",
                                      n_resamples=20_000, alternative="two-sided", random_state=0).pvalue
    assert abs(result.p_value - expected) < 0.01
    assert paired_difference(np.full(200, 1.0) + rng.normal(0, 0.01, 200)).p_value == pytest.approx(1 / 10_001)


def test_interval_matches_scipy_bootstrap_and_the_normal_closed_form() -> None:
    rng = np.random.default_rng(3)
    differences = rng.normal(0.5, 2.0, size=400)
    result = paired_difference(differences, resamples=20_000)
    scipy_ci = stats.bootstrap((differences,), np.mean, n_resamples=20_000, method="percentile",
                               random_state=0).confidence_interval
    half_width = 1.959964 * differences.std(ddof=0) / np.sqrt(len(differences))
    for low, high in ((scipy_ci.low, scipy_ci.high),
                      (differences.mean() - half_width, differences.mean() + half_width)):
        assert result.ci_low == pytest.approx(low, abs=0.02 * half_width * 2 + 0.01)
        assert result.ci_high == pytest.approx(high, abs=0.02 * half_width * 2 + 0.01)
    assert result.significant and result.p_value < 1e-3


def test_interval_covers_the_true_shift_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(4)
    shift, trials = 0.2, 200
    covered = rejected = 0
    for trial in range(trials):
        differences = rng.normal(shift, 1.0, size=60)
        result = paired_difference(differences, resamples=2_000, seed=trial)
        covered += result.ci_low <= shift <= result.ci_high
        null = paired_difference(differences - shift, resamples=2_000, seed=trial)
        rejected += null.p_value < 0.05
    # binomial(200, 0.95) lies in [181, 197] with probability > 0.999; the percentile interval runs a little short
    assert 178 <= covered <= 197
    assert rejected <= 22  # the test's size: about 5% of 200 false rejections


def test_rows_of_one_image_are_resampled_together() -> None:
    rng = np.random.default_rng(5)
    per_image = rng.normal(0.1, 1.0, size=80)
    # three seeds that agree on every image: no more information than one seed
    three_seeds = np.tile(per_image, 3)
    images = np.tile(np.arange(80), 3)
    clustered = paired_difference(three_seeds, images)
    alone = paired_difference(per_image)
    naive = paired_difference(three_seeds)
    assert (clustered.pairs, clustered.clusters) == (240, 80)
    assert clustered.mean == pytest.approx(alone.mean)
    assert clustered.ci_high - clustered.ci_low == pytest.approx(alone.ci_high - alone.ci_low, rel=0.08)
    assert clustered.p_value == pytest.approx(alone.p_value, abs=0.02)
    # treating the 240 rows as independent would shrink the interval by about sqrt(3)
    assert (naive.ci_high - naive.ci_low) < 0.7 * (clustered.ci_high - clustered.ci_low)


def test_clusters_of_unequal_size_weigh_by_their_rows() -> None:
    # image 0 scored by two seeds, image 1 by one: the mean is over the three pairs, not over the two images
    result = paired_difference([1.0, 1.0, 4.0], clusters=["a", "a", "b"])
    assert result.mean == pytest.approx(2.0)
    assert 1.0 <= result.ci_low <= result.ci_high <= 4.0
    assert result.p_value == pytest.approx(0.5)  # 2 of the 4 sign patterns reach |sum| = 6


def test_seeded_and_deterministic() -> None:
    differences = np.random.default_rng(6).normal(size=50)
    assert paired_difference(differences, seed=3) == paired_difference(differences, seed=3)
    # the rows' order does not matter: the same (difference, image) rows give the same interval and p-value
    order = np.random.default_rng(7).permutation(50)
    shuffled = paired_difference(differences[order], order, seed=3)
    assert (shuffled.ci_low, shuffled.ci_high, shuffled.p_value) == pytest.approx(
        (paired_difference(differences, seed=3).ci_low, paired_difference(differences, seed=3).ci_high,
         paired_difference(differences, seed=3).p_value), rel=1e-12)
    assert paired_difference(differences, seed=3).ci_low != paired_difference(differences, seed=4).ci_low


@pytest.mark.parametrize(("differences", "clusters", "message"), [
    ([], None, "no pair"),
    ([1.0, float("nan")], None, "not finite"),
    ([1.0, 2.0], [0], "2 differences for 1 cluster"),
])
def test_bad_rows_get_one_line(differences, clusters, message) -> None:
    with pytest.raises(ValueError, match=message):
        paired_difference(differences, clusters)


def test_expected_calibration_error_by_hand() -> None:
    from utils.faithfulness import expected_calibration_error

    # two bins used (of 10): (0.1, 0.2] holds 0.15 (wrong) and (0.8, 0.9] holds 0.85, 0.85 (right) and 0.9 (wrong)
    confidences = [0.15, 0.85, 0.85, 0.9]
    correct = [0, 1, 1, 0]
    expected = 100 * (1 * abs(0 - 0.15) + 3 * abs(2 / 3 - (0.85 + 0.85 + 0.9) / 3)) / 4
    assert expected_calibration_error(confidences, correct, bins=10) == pytest.approx(expected)
    assert expected_calibration_error([1.0, 1.0], [1, 1]) == 0.0  # a confidence of 1 falls in the last bin
    with pytest.raises(ValueError, match="2 confidences for 1 outcomes"):
        expected_calibration_error([0.5, 0.5], [1])


def test_sigmoid_calibration_equals_torch_bce_and_leaves_difficult_pairs_out() -> None:
    import torch

    from utils.faithfulness import sigmoid_calibration

    logits = np.array([[2.0, -1.0, 30.0], [-0.5, 0.3, -40.0]])
    labels = np.array([[1, -1, 0], [-1, 1, -1]])  # the 30.0 pair is difficult: left out
    kept = labels != 0
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor(logits[kept]), torch.tensor((labels[kept] == 1).astype(float)))
    result = sigmoid_calibration(logits, labels)
    assert result["nll"] == pytest.approx(float(expected))
    assert 0.0 <= result["ece"] <= 100.0
