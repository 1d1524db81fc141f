"""Saliency evaluation metrics: Average Drop / Increase / Gain, insertion / deletion (RISE), +/- perturbation
(Chefer et al.), pointing game and energy-based pointing game.

Conventions shared by every function:

* ``images`` are normalised model inputs (N, 3, H, W); ``mean`` / ``std`` map them back to [0, 1] pixels.
* ``saliency`` is (N, h, w) (or (N, 1, h, w)) at any resolution, tensor or numpy; it goes through
  :func:`prepare_saliency` (per-image min-max, then bilinear resize to (H, W)).
* models map images to logits (N, K); class scores are always computed from float32 logits.
* everything is computed per image on the model's device and returned on the CPU; summaries average per
  IMAGE (the reference averages per batch, which over-weights the last partial batch).

The exact definitions follow the CA-Stream reference (``engine/evaluation.py``) unless a docstring says otherwise;
:class:`EvalProtocol` records every knob so that a result file states how it was computed.
"""
from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from utils.data import denormalize, normalize

ArrayLike = torch.Tensor | np.ndarray
Targets = torch.Tensor | Sequence[int]

# The reference guards AD / AG denominators with float64 machine epsilon; scores are promoted to float64 so
# that this eps is not lost against p (float32 eps is ~1e-7).
EPS = float(np.finfo(np.float64).eps)
DEFAULT_FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
CausalMode = Literal["insertion", "deletion"]
PerturbationMode = Literal["positive", "negative"]


# --------------------------------------------------------------------------------------------
# Protocol card

@dataclass(frozen=True)
class EvalProtocol:
    """Every setting the faithfulness numbers depend on; ``to_dict()`` is the card stored with results.

    ``pixels_per_step=None`` means 8 image rows (the reference's ``imsize * 8``: 1792 px, 28 steps at 224).
    ``deletion_substrate``: 'zeros' of the normalised tensor (= dataset-mean grey, reference and RISE),
    'black' (pixel value 0) or 'blur' (the insertion start image). ``masking_space`` applies to AD/AI/AG:
    'pixel' = normalize(denormalize(x) * S) (reference), 'normalized' = x * S (pytorch-grad-cam).
    ``softmax=False`` scores insertion/deletion with the raw target logit (AD/AI/AG always use softmax).
    """
    name: str = "reference"
    pixels_per_step: int | None = None
    blur_kernel: int = 5
    blur_sigma: float = 5.0
    deletion_substrate: Literal["zeros", "black", "blur"] = "zeros"
    class_source: Literal["gt", "pred"] = "gt"
    masking_space: Literal["pixel", "normalized"] = "pixel"
    softmax: bool = True
    perturbation_fractions: tuple[float, ...] = DEFAULT_FRACTIONS

    def step_pixels(self, height: int, width: int) -> int:
        """Pixels revealed / removed per insertion-deletion step for an image of this size."""
        return self.pixels_per_step if self.pixels_per_step is not None else 8 * width

    def to_dict(self) -> dict:
        """JSON-ready card: the fields plus the fixed choices a reader would otherwise have to guess."""
        card = asdict(self)
        card["perturbation_fractions"] = list(self.perturbation_fractions)
        card.update(
            blur_padding=f"zeros, {self.blur_kernel // 2} px, on the normalised tensor",
            blur_kernel_construction="scipy.ndimage.gaussian_filter of a centred delta (mode reflect), as RISE",
            saliency_resize="per-image min-max at input resolution, then bilinear (align_corners=False)",
            pixel_order="saliency descending, ties by increasing flat index (stable sort)",
            auc="trapezoid on [0, 1]: (sum - first/2 - last/2) / (n - 1)",
            ad_ag_eps=EPS,
            aggregation="mean over images",
        )
        return card


PROTOCOLS: dict[str, EvalProtocol] = {
    "reference": EvalProtocol(),
    # RISE's evaluation.py: one row per step at 224, 11x11 sigma-5 blur, top-1 predicted class.
    "rise": EvalProtocol(name="rise", pixels_per_step=224, blur_kernel=11, class_source="pred"),
}


def get_protocol(protocol: str | EvalProtocol) -> EvalProtocol:
    """A preset by name ('reference', 'rise') or the protocol itself."""
    if isinstance(protocol, EvalProtocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; presets: {sorted(PROTOCOLS)}")
    return PROTOCOLS[protocol]


# --------------------------------------------------------------------------------------------
# Inputs

def prepare_saliency(saliency: ArrayLike, size: tuple[int, int], num_images: int | None = None,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """(N, H, W) float32 maps in [0, 1]: per-image min-max, then bilinear resize (align_corners=False) to ``size``.

    Normalising before resizing reproduces the reference exactly (it stores min-max-normalised 7x7 maps and
    only upsamples at evaluation); bilinear weights are convex, so the result stays in [0, 1].
    A constant map becomes all zeros. Non-finite values and a count different from ``num_images`` raise.
    """
    s = torch.as_tensor(saliency)
    if s.ndim == 4 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim != 3:
        raise ValueError(f"saliency must be (N, h, w) or (N, 1, h, w), got shape {tuple(s.shape)}")
    if num_images is not None and s.shape[0] != num_images:
        raise ValueError(f"got {s.shape[0]} saliency maps for {num_images} images")
    s = s.to(device=device, dtype=torch.float32)
    bad = ~torch.isfinite(s).flatten(1).all(1)
    if bad.any():
        raise ValueError(f"saliency map {int(bad.nonzero()[0])} contains NaN or inf")
    lo = s.amin(dim=(1, 2), keepdim=True)
    span = s.amax(dim=(1, 2), keepdim=True) - lo
    s = (s - lo) / torch.where(span > 0, span, torch.ones_like(span))
    if tuple(s.shape[1:]) != tuple(size):
        # clamp: the convex combination can exceed 1 by a rounding error
        s = F.interpolate(s[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0].clamp_(0, 1)
    return s


def _model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return fallback if tensor is None else tensor.device


def _as_targets(targets: Targets, n: int, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(targets, dtype=torch.long, device=device).reshape(-1)
    if t.numel() != n:
        raise ValueError(f"got {t.numel()} targets for {n} images")
    return t


def gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    """(size, size) kernel identical to RISE's ``gkern``: scipy ``gaussian_filter`` (truncate 4, mode 'reflect')
    applied to a centred delta. With sigma >> size the reflected tails make it almost a box filter."""
    radius = int(4.0 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    centre, period = size // 2, 2 * size
    k1 = np.zeros(size)
    for m, wgt in zip(offsets, weights):
        # correlate1d: out[i] = sum_m w[m] * delta_ext[i + m]; the reflect-extended delta is 1 where
        # the half-sample-symmetric fold of (i + m) lands on the centre, i.e. i = fold(centre - m)
        p = (centre - m) % period
        k1[p if p < size else period - 1 - p] += wgt
    return torch.from_numpy(np.outer(k1, k1).astype(np.float32))


def blur(images: torch.Tensor, kernel: int, sigma: float) -> torch.Tensor:
    """Per-channel Gaussian blur with zero padding, applied to the normalised tensor as the reference does."""
    k = gaussian_kernel(kernel, sigma).to(images)
    channels = images.shape[1]
    return F.conv2d(images, k.expand(channels, 1, kernel, kernel), padding=kernel // 2, groups=channels)


def _pixel_rank(saliency: torch.Tensor, descending: bool) -> torch.Tensor:
    """(N, H*W) position of every pixel in the saliency order; ties keep increasing flat index (stable sort)."""
    flat = saliency.flatten(1)
    order = torch.argsort(flat, dim=1, descending=descending, stable=True)
    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


# --------------------------------------------------------------------------------------------
# Forward passes

def _logits(model: nn.Module, x: torch.Tensor, amp_dtype: torch.dtype | None, channels_last: bool) -> torch.Tensor:
    """Logits of ``x`` in one forward; a chunk that runs out of GPU memory is split in halves (recursively), so a
    large ``batch_size`` means "the largest chunk that fits" and results do not depend on it."""
    try:
        return _forward(model, x, amp_dtype, channels_last)
    except torch.cuda.OutOfMemoryError:
        if x.shape[0] == 1:
            raise
    if x.is_cuda:
        torch.cuda.empty_cache()
    half = (x.shape[0] + 1) // 2
    return torch.cat([_logits(model, x[:half], amp_dtype, channels_last),
                      _logits(model, x[half:], amp_dtype, channels_last)])


def _forward(model: nn.Module, x: torch.Tensor, amp_dtype: torch.dtype | None, channels_last: bool) -> torch.Tensor:
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(x.device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    with autocast:
        # float32 before softmax/argmax so that bf16 logits do not quantise the probabilities
        return model(x).float()


def _target_score(softmax: bool) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def score(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        values = logits.softmax(-1) if softmax else logits
        return values.gather(1, targets[:, None])[:, 0]
    return score


def _is_correct(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return logits.argmax(-1) == targets


def _batched_logits(model: nn.Module, x: torch.Tensor, batch_size: int, amp_dtype: torch.dtype | None,
                    channels_last: bool) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([_logits(model, x[i:i + batch_size], amp_dtype, channels_last)
                          for i in range(0, x.shape[0], batch_size)])


def _sweep(model: nn.Module, start: torch.Tensor, finish: torch.Tensor, rank: torch.Tensor,
           thresholds: torch.Tensor, targets: torch.Tensor,
           reduce: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], batch_size: int,
           amp_dtype: torch.dtype | None, channels_last: bool) -> torch.Tensor:
    """(N, T) ``reduce(logits, target)`` of every blend ``where(rank < thresholds[t], finish, start)``.

    The shared engine of insertion/deletion and +/- perturbation. Blends are built on the device by one broadcast
    compare per chunk of (steps x images), at most ``batch_size`` forwarded at once, so memory does not grow with
    the number of steps and no Python loop touches pixels.
    """
    shape = torch.broadcast_shapes(start.shape, finish.shape)   # a substrate may be one (1, C, H, W) image
    n, _, h, w = shape
    start, finish = start.expand(shape), finish.expand(shape)
    rank = rank.view(n, 1, h, w)
    num_images = min(n, batch_size)
    num_steps = max(1, batch_size // num_images)
    columns: list[torch.Tensor] = []
    with torch.inference_mode():
        for i in range(0, n, num_images):
            rows, block = [], slice(i, i + num_images)
            for t in range(0, len(thresholds), num_steps):
                thr = thresholds[t:t + num_steps]
                mask = rank[None, block] < thr.view(-1, 1, 1, 1, 1)        # (steps, images, 1, H, W)
                x = torch.where(mask, finish[None, block], start[None, block]).flatten(0, 1)
                out = reduce(_logits(model, x, amp_dtype, channels_last), targets[block].repeat(len(thr)))
                rows.append(out.view(len(thr), -1).T)
            columns.append(torch.cat(rows, dim=1))
    return torch.cat(columns).cpu()


# --------------------------------------------------------------------------------------------
# Average Drop / Increase / Gain

def drop_increase_gain(p: torch.Tensor, o: torch.Tensor,
                       eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image (drop, increase, gain) from clean scores ``p`` and masked scores ``o`` (float64, bool, float64).

    drop = max(0, p - o) / (p + eps); increase = 1[o > p] (strict); gain = max(0, o - p) / (1 - p + eps).
    """
    p, o = torch.as_tensor(p, dtype=torch.float64), torch.as_tensor(o, dtype=torch.float64)
    drop = (p - o).clamp_min(0) / (p + eps)
    gain = (o - p).clamp_min(0) / (1 - p + eps)
    return drop, o > p, gain


def _mask_images(images: torch.Tensor, sal: torch.Tensor, mean: Sequence[float], std: Sequence[float],
                 space: str) -> torch.Tensor:
    if space == "pixel":
        return normalize(denormalize(images, mean, std) * sal[:, None], mean, std)
    if space == "normalized":
        return images * sal[:, None]
    raise ValueError(f"masking_space must be 'pixel' or 'normalized', got {space!r}")


def _adg(model: nn.Module, images: torch.Tensor, sal: torch.Tensor, targets: torch.Tensor, p: torch.Tensor,
         mean: Sequence[float], std: Sequence[float], masking_space: str, batch_size: int,
         amp_dtype: torch.dtype | None, channels_last: bool) -> dict[str, torch.Tensor]:
    masked = _mask_images(images, sal, mean, std, masking_space)
    o = _target_score(True)(_batched_logits(model, masked, batch_size, amp_dtype, channels_last), targets).cpu()
    drop, increase, gain = drop_increase_gain(p, o)
    return {"p": p, "o": o, "ad": drop, "ai": increase, "ag": gain}


def average_drop_increase_gain(model: nn.Module, images: torch.Tensor, saliency: ArrayLike, targets: Targets,
                               mean: Sequence[float], std: Sequence[float], batch_size: int = 64, *,
                               masking_space: Literal["pixel", "normalized"] = "pixel",
                               amp_dtype: torch.dtype | None = None,
                               channels_last: bool = False) -> dict[str, torch.Tensor]:
    """Per-image ``p``, ``o`` (softmax of the target), ``ad``, ``ai`` (increase, bool) and ``ag``.

    ``o`` is scored on ``normalize(denormalize(x) * S)``: the map is a soft mask on [0, 1] pixels, black
    background (``masking_space='normalized'`` multiplies the normalised tensor instead).
    """
    device = _model_device(model, images.device)
    images = images.to(device)
    n, _, h, w = images.shape
    sal = prepare_saliency(saliency, (h, w), n, device)
    targets = _as_targets(targets, n, device)
    p = _target_score(True)(_batched_logits(model, images, batch_size, amp_dtype, channels_last), targets).cpu()
    return _adg(model, images, sal, targets, p, mean, std, masking_space, batch_size, amp_dtype, channels_last)


# --------------------------------------------------------------------------------------------
# Insertion / deletion

def auc(curves: torch.Tensor) -> torch.Tensor:
    """Trapezoid area of curves sampled uniformly on [0, 1], along the last axis: (sum - first/2 - last/2)/(n-1)."""
    curves = torch.as_tensor(curves)
    return (curves.sum(-1) - curves[..., 0] / 2 - curves[..., -1] / 2) / (curves.shape[-1] - 1)


def _substrate(kind: str, images: torch.Tensor, proto: EvalProtocol, mean: Sequence[float] | None,
               std: Sequence[float] | None) -> torch.Tensor:
    if kind == "zeros":
        return torch.zeros_like(images[:1])
    if kind == "blur":
        return blur(images, proto.blur_kernel, proto.blur_sigma)
    if kind == "black":
        if mean is None or std is None:
            raise ValueError("the 'black' deletion substrate needs mean and std")
        return normalize(torch.zeros_like(images[:1]), mean, std)
    raise ValueError(f"deletion_substrate must be 'zeros', 'black' or 'blur', got {kind!r}")


def _causal(model: nn.Module, images: torch.Tensor, rank: torch.Tensor, targets: torch.Tensor, mode: str,
            proto: EvalProtocol, pixels_per_step: int | None, substrate: torch.Tensor | None,
            mean: Sequence[float] | None, std: Sequence[float] | None, batch_size: int,
            amp_dtype: torch.dtype | None, channels_last: bool) -> torch.Tensor:
    h, w = images.shape[-2:]
    pps = pixels_per_step or proto.step_pixels(h, w)
    steps = math.ceil(h * w / pps)
    thresholds = torch.arange(steps + 1, device=images.device) * pps
    if mode == "deletion":
        start = images
        finish = _substrate(proto.deletion_substrate, images, proto, mean, std) if substrate is None else substrate
    elif mode == "insertion":
        start = blur(images, proto.blur_kernel, proto.blur_sigma) if substrate is None else substrate
        finish = images
    else:
        raise ValueError(f"mode must be 'insertion' or 'deletion', got {mode!r}")
    return _sweep(model, start.to(images), finish.to(images), rank, thresholds, targets,
                  _target_score(proto.softmax), batch_size, amp_dtype, channels_last)


def causal_metric(model: nn.Module, images: torch.Tensor, saliency: ArrayLike, targets: Targets,
                  mode: CausalMode, pixels_per_step: int | None = None, substrate: torch.Tensor | None = None,
                  batch_size: int = 64, *, protocol: str | EvalProtocol = "reference",
                  mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                  amp_dtype: torch.dtype | None = None, channels_last: bool = False) -> torch.Tensor:
    """(N, steps + 1) target-class scores while pixels move from the start to the finish image (RISE).

    Pixels are taken in descending saliency order (ties: lower flat index first); step k has the first
    ``k * pixels_per_step`` of them from the finish image, ``steps = ceil(H * W / pixels_per_step)``.
    Deletion: image -> substrate; insertion: blurred image -> image. ``pixels_per_step``, the blur and the
    substrate default to ``protocol``; an explicit ``substrate`` (broadcastable to the images) replaces the
    deletion finish / insertion start. ``batch_size`` bounds the images x steps forwarded at once; results do not
    depend on it. ``mean``/``std`` are only needed for the 'black' deletion substrate. ``amp_dtype`` (autocast)
    and ``channels_last`` (input layout; convert the model as well for the full speed-up) only change speed and
    rounding.
    """
    proto = get_protocol(protocol)
    device = _model_device(model, images.device)
    images = images.to(device)
    n, _, h, w = images.shape
    rank = _pixel_rank(prepare_saliency(saliency, (h, w), n, device), descending=True)
    return _causal(model, images, rank, _as_targets(targets, n, device), mode, proto, pixels_per_step, substrate,
                   mean, std, batch_size, amp_dtype, channels_last)


# --------------------------------------------------------------------------------------------
# Positive / negative perturbation (Chefer et al.)

def _perturb(model: nn.Module, images: torch.Tensor, rank: torch.Tensor, targets: torch.Tensor,
             mean: Sequence[float], std: Sequence[float], fractions: Sequence[float], batch_size: int,
             amp_dtype: torch.dtype | None, channels_last: bool) -> torch.Tensor:
    h, w = images.shape[-2:]
    # int(fraction * H * W) as Chefer et al.; the tiny offset keeps e.g. 0.29 * 100 from flooring to 28
    counts = [int(f * h * w + 1e-6) for f in fractions]
    thresholds = torch.tensor(counts, device=images.device)
    black = normalize(torch.zeros_like(images[:1]), mean, std)  # pixel value 0, re-normalised
    return _sweep(model, images, black, rank, thresholds, targets, _is_correct, batch_size, amp_dtype,
                  channels_last)


def perturbation_curve(model: nn.Module, images: torch.Tensor, saliency: ArrayLike, targets: Targets,
                       mean: Sequence[float], std: Sequence[float], mode: PerturbationMode = "positive",
                       fractions: Sequence[float] = DEFAULT_FRACTIONS, batch_size: int = 64, *,
                       amp_dtype: torch.dtype | None = None, channels_last: bool = False) -> torch.Tensor:
    """(N, len(fractions)) bool: is argmax == target after zeroing (in pixel space) the ``fraction`` most
    ('positive') or least ('negative') salient pixels. Positive should fall fast, negative stay high."""
    if mode not in ("positive", "negative"):
        raise ValueError(f"mode must be 'positive' or 'negative', got {mode!r}")
    device = _model_device(model, images.device)
    images = images.to(device)
    n, _, h, w = images.shape
    rank = _pixel_rank(prepare_saliency(saliency, (h, w), n, device), descending=mode == "positive")
    return _perturb(model, images, rank, _as_targets(targets, n, device), mean, std, fractions, batch_size,
                    amp_dtype, channels_last)


def perturbation_summary(correct: torch.Tensor, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> dict:
    """Accuracy (%) at every fraction and its mean over the fractions."""
    per_fraction = correct.double().mean(0) * 100
    return {"fractions": list(fractions), "accuracy": per_fraction.tolist(), "mean": float(per_fraction.mean())}


# --------------------------------------------------------------------------------------------
# Localisation

def _argmax_yx(sal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = sal.flatten(1).argmax(1)  # first maximum in raster order
    return flat // sal.shape[2], flat % sal.shape[2]


def pointing_game(saliency: ArrayLike, masks: ArrayLike, tolerance: float = 0) -> torch.Tensor:
    """(N,) bool: the maximum of the map (upsampled to the mask size; ties: first in raster order) lies within
    ``tolerance`` pixels (Euclidean, TorchRay style) of the object mask (N, H, W)."""
    masks = torch.as_tensor(masks).bool()
    n, h, w = masks.shape
    sal = prepare_saliency(saliency, (h, w), n, masks.device)
    y, x = _argmax_yx(sal)
    ys = torch.arange(h, device=masks.device).view(1, h, 1)
    xs = torch.arange(w, device=masks.device).view(1, 1, w)
    near = (ys - y.view(n, 1, 1)) ** 2 + (xs - x.view(n, 1, 1)) ** 2 <= tolerance ** 2
    return (near & masks).flatten(1).any(1).cpu()


def energy_pointing_game(saliency: ArrayLike, masks: ArrayLike) -> torch.Tensor:
    """(N,) share of the prepared map's mass inside the mask (Score-CAM); an all-zero map scores 0."""
    masks = torch.as_tensor(masks).bool()
    n, h, w = masks.shape
    sal = prepare_saliency(saliency, (h, w), n, masks.device).double()
    total = sal.sum((1, 2))
    inside = (sal * masks).sum((1, 2))
    return torch.where(total > 0, inside / torch.where(total > 0, total, 1.0), 0.0).cpu()


# --------------------------------------------------------------------------------------------
# Driver

def evaluate_batch(model: nn.Module, images: torch.Tensor, saliency: ArrayLike, targets: Targets | None,
                   mean: Sequence[float], std: Sequence[float], protocol: str | EvalProtocol = "reference",
                   batch_size: int = 64, *, perturbation: bool = True, amp_dtype: torch.dtype | None = None,
                   channels_last: bool = False) -> dict[str, torch.Tensor]:
    """All faithfulness metrics of one batch, per image (CPU tensors).

    Keys: target, p, o, ad, ai, ag, insertion_curve, deletion_curve, insertion_auc, deletion_auc and, with
    ``perturbation``, positive_perturbation / negative_perturbation ((N, fractions) bool). With
    ``protocol.class_source == 'pred'`` the clean image's predicted class is used and ``targets`` is ignored
    (may be None).
    """
    proto = get_protocol(protocol)
    device = _model_device(model, images.device)
    images = images.to(device)
    n, _, h, w = images.shape
    sal = prepare_saliency(saliency, (h, w), n, device)
    clean = _batched_logits(model, images, batch_size, amp_dtype, channels_last)
    if proto.class_source == "pred":
        targets = clean.argmax(-1)
    elif targets is None:
        raise ValueError("class_source 'gt' needs targets")
    targets = _as_targets(targets, n, device)
    p = _target_score(True)(clean, targets).cpu()
    out = {"target": targets.cpu(),
           **_adg(model, images, sal, targets, p, mean, std, proto.masking_space, batch_size, amp_dtype,
                  channels_last)}
    rank = _pixel_rank(sal, descending=True)
    for mode in ("insertion", "deletion"):
        curve = _causal(model, images, rank, targets, mode, proto, None, None, mean, std, batch_size, amp_dtype,
                        channels_last)
        out[f"{mode}_curve"], out[f"{mode}_auc"] = curve, auc(curve)
    if perturbation:
        for mode, mode_rank in (("positive", rank), ("negative", _pixel_rank(sal, descending=False))):
            out[f"{mode}_perturbation"] = _perturb(model, images, mode_rank, targets, mean, std,
                                                   proto.perturbation_fractions, batch_size, amp_dtype,
                                                   channels_last)
    return out


def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 64, *, amp_dtype: torch.dtype | None = None,
            channels_last: bool = False) -> torch.Tensor:
    """(N,) top-1 classes of the clean images (CPU), computed as :func:`evaluate_batch` does for class_source
    'pred': callers that need the predicted class before evaluating (e.g. to explain it) get the same one."""
    device = _model_device(model, images.device)
    return _batched_logits(model, images.to(device), batch_size, amp_dtype, channels_last).argmax(-1).cpu()


# x100 like the poster's table; curves and targets are not averaged
_PERCENT_KEYS = ("ad", "ai", "ag", "insertion_auc", "deletion_auc", "positive_perturbation",
                 "negative_perturbation")


def summarize(per_image: dict[str, torch.Tensor]) -> dict[str, float]:
    """Means over images, in percent: AD, AI, AG, insertion/deletion AUC and mean +/- perturbation accuracy."""
    summary: dict[str, float] = {key: float(per_image[key].double().mean() * 100)
                                 for key in _PERCENT_KEYS if key in per_image}
    summary["num_images"] = len(next(iter(per_image.values()))) if per_image else 0
    return summary


class MetricAccumulator:
    """Collects :func:`evaluate_batch` outputs batch after batch; ``per_image()`` concatenates, ``summary()``
    averages over all images seen (so a partial last batch weighs what its images weigh)."""

    def __init__(self) -> None:
        self._parts: dict[str, list[torch.Tensor]] = defaultdict(list)

    def update(self, per_image: dict[str, torch.Tensor]) -> None:
        for key, value in per_image.items():
            self._parts[key].append(value.detach().cpu())

    def per_image(self) -> dict[str, torch.Tensor]:
        return {key: torch.cat(parts) for key, parts in self._parts.items()}

    def summary(self) -> dict[str, float]:
        return summarize(self.per_image())
