"""Insertion and deletion (RISE): the class score while pixels move, most salient first, from a start image to a
finish image; the area under that curve."""
from __future__ import annotations

import math
from typing import Literal, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from utils.data import normalize
from utils.runtime.forward import ForwardSettings

from .inputs import ArrayLike, Targets, as_targets, pixel_rank, prepare_saliency, target_scores
from .protocol import EvalProtocol, get_protocol
from .sweep import sweep

CausalMode = Literal["insertion", "deletion"]


def auc(curves: torch.Tensor) -> torch.Tensor:
    """Trapezoid area of curves sampled uniformly on [0, 1], along the last axis: (sum - first/2 - last/2)/(n-1)."""
    curves = torch.as_tensor(curves)
    return (curves.sum(-1) - curves[..., 0] / 2 - curves[..., -1] / 2) / (curves.shape[-1] - 1)


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


def _deletion_substrate(images: torch.Tensor, proto: EvalProtocol, mean: Optional[Sequence[float]],
                        std: Optional[Sequence[float]]) -> torch.Tensor:
    kind = proto.deletion_substrate
    if kind == "zeros":
        return torch.zeros_like(images[:1])
    if kind == "blur":
        return blur(images, proto.blur_kernel, proto.blur_sigma)
    if kind == "black":
        if mean is None or std is None:
            raise ValueError("the 'black' deletion substrate needs mean and std")
        return normalize(torch.zeros_like(images[:1]), mean, std)
    raise ValueError(f"deletion_substrate must be 'zeros', 'black' or 'blur', got {kind!r}")


def causal_metric(model: nn.Module, images: torch.Tensor, saliency: ArrayLike, targets: Targets,
                  mode: CausalMode, pixels_per_step: Optional[int] = None, substrate: Optional[torch.Tensor] = None,
                  forward: ForwardSettings = ForwardSettings(), *, protocol: Union[str, EvalProtocol] = "reference",
                  mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None) -> torch.Tensor:
    """(N, steps + 1) target-class scores (``protocol.class_score``) while pixels move from the start to the finish
    image (RISE).

    Pixels are taken in descending saliency order (ties: lower flat index first); step k has the first
    ``k * pixels_per_step`` of them from the finish image, ``steps = ceil(H * W / pixels_per_step)``.
    Deletion: image -> substrate; insertion: blurred image -> image. ``pixels_per_step``, the blur and the
    substrate default to ``protocol``; an explicit ``substrate`` (broadcastable to the images) replaces the
    deletion finish / insertion start. ``forward.chunk`` bounds the images x steps forwarded at once; results do
    not depend on it. ``mean``/``std`` are only needed for the 'black' deletion substrate. ``forward.amp`` and
    ``forward.channels_last`` only change speed and rounding.
    """
    proto = get_protocol(protocol)
    device = forward.device_for(model)
    images = images.to(device)
    n, _, h, w = images.shape
    rank = pixel_rank(prepare_saliency(saliency, (h, w), n, device), descending=True)
    targets = as_targets(targets, n, device)
    pps = pixels_per_step or proto.step_pixels(h, w)
    thresholds = torch.arange(math.ceil(h * w / pps) + 1, device=device) * pps
    if mode == "deletion":
        start = images
        finish = _deletion_substrate(images, proto, mean, std) if substrate is None else substrate
    elif mode == "insertion":
        start = blur(images, proto.blur_kernel, proto.blur_sigma) if substrate is None else substrate
        finish = images
    else:
        raise ValueError(f"mode must be 'insertion' or 'deletion', got {mode!r}")

    def score(logits: torch.Tensor, chunk_targets: torch.Tensor) -> torch.Tensor:
        return target_scores(logits, chunk_targets, proto.class_score if proto.softmax else "logit")

    return sweep(model, start.to(images), finish.to(images), rank, thresholds, targets, score, forward)
