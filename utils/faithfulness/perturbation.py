"""Positive and negative perturbation (Chefer et al.): is the image still classified right once the most (or the
least) salient pixels are zeroed?"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

from utils.data import normalize
from utils.runtime.forward import ForwardSettings

from .inputs import ArrayLike, Targets, as_targets, is_correct, is_recognised, pixel_rank, prepare_saliency
from .protocol import DEFAULT_FRACTIONS
from .sweep import sweep

PerturbationMode = Literal["positive", "negative"]


def perturbation_curve(model: nn.Module, images: torch.Tensor, saliency: ArrayLike, targets: Targets,
                       mean: Sequence[float], std: Sequence[float], mode: PerturbationMode = "positive",
                       fractions: Sequence[float] = DEFAULT_FRACTIONS,
                       forward: ForwardSettings = ForwardSettings(), class_score: str = "softmax") -> torch.Tensor:
    """(N, len(fractions)) bool: is the target still recognised (argmax == target; with ``class_score`` 'sigmoid',
    its sigmoid > 1/2) after zeroing (in pixel space) the ``fraction`` most ('positive') or least ('negative')
    salient pixels. Positive should fall fast, negative stay high."""
    if mode not in ("positive", "negative"):
        raise ValueError(f"mode must be 'positive' or 'negative', got {mode!r}")
    device = forward.device_for(model)
    images = images.to(device)
    n, _, h, w = images.shape
    rank = pixel_rank(prepare_saliency(saliency, (h, w), n, device), descending=mode == "positive")
    # int(fraction * H * W) as Chefer et al.; the tiny offset keeps e.g. 0.29 * 100 from flooring to 28
    thresholds = torch.tensor([int(f * h * w + 1e-6) for f in fractions], device=device)
    black = normalize(torch.zeros_like(images[:1]), mean, std)  # pixel value 0, re-normalised
    recognised = is_recognised if class_score == "sigmoid" else is_correct
    return sweep(model, images, black, rank, thresholds, as_targets(targets, n, device), recognised, forward)
