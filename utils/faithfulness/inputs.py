"""Inputs of every metric: saliency maps prepared at the image's resolution, targets, class scores."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F

ArrayLike = Union[torch.Tensor, np.ndarray]
Targets = Union[torch.Tensor, Sequence[int]]


def prepare_saliency(saliency: ArrayLike, size: tuple[int, int], num_images: Union[int, None] = None,
                     device: Union[torch.device, str, None] = None) -> torch.Tensor:
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


def as_targets(targets: Targets, n: int, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(targets, dtype=torch.long, device=device).reshape(-1)
    if t.numel() != n:
        raise ValueError(f"got {t.numel()} targets for {n} images")
    return t


def target_scores(logits: torch.Tensor, targets: torch.Tensor, softmax: bool = True) -> torch.Tensor:
    """(N,) softmax probability (or raw logit) of each image's target class."""
    values = logits.softmax(-1) if softmax else logits
    return values.gather(1, targets[:, None])[:, 0]


def is_correct(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return logits.argmax(-1) == targets


def pixel_rank(saliency: torch.Tensor, descending: bool) -> torch.Tensor:
    """(N, H*W) position of every pixel in the saliency order; ties keep increasing flat index (stable sort)."""
    flat = saliency.flatten(1)
    order = torch.argsort(flat, dim=1, descending=descending, stable=True)
    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)
