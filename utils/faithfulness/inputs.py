"""Inputs of every metric: saliency maps prepared at the image's resolution, targets, class scores."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F

ArrayLike = Union[torch.Tensor, np.ndarray]
Targets = Union[torch.Tensor, Sequence[int]]
# how logits become class scores: a softmax over the classes (single-label), each class's sigmoid (multi-label)
CLASS_SCORES = ("softmax", "sigmoid")


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


def class_scores(logits: torch.Tensor, class_score: str = "softmax") -> torch.Tensor:
    """(N, C) scores of every class: ``softmax`` over the classes, each class's ``sigmoid``, or the raw ``logit``."""
    if class_score == "softmax":
        return logits.softmax(-1)
    if class_score == "sigmoid":
        return logits.sigmoid()
    if class_score == "logit":
        return logits
    raise ValueError(f"class_score must be one of {', '.join(CLASS_SCORES)} or 'logit', got {class_score!r}")


def target_scores(logits: torch.Tensor, targets: torch.Tensor, class_score: str = "softmax") -> torch.Tensor:
    """(N,) score of each image's target class (see :func:`class_scores`)."""
    return class_scores(logits, class_score).gather(1, targets[:, None])[:, 0]


def is_correct(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The target class is the top-1 class (single-label)."""
    return logits.argmax(-1) == targets


def is_recognised(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The target class's sigmoid exceeds 1/2 (multi-label: each class is decided on its own)."""
    return logits.gather(1, targets[:, None])[:, 0] > 0


def pixel_rank(saliency: torch.Tensor, descending: bool) -> torch.Tensor:
    """(N, H*W) position of every pixel in the saliency order; ties keep increasing flat index (stable sort)."""
    flat = saliency.flatten(1)
    order = torch.argsort(flat, dim=1, descending=descending, stable=True)
    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)
