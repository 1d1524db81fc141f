"""Average Drop, Increase and Gain: the class score on the image against the score on the image masked by the map."""
from __future__ import annotations

from typing import Literal, Optional, Sequence

import torch
from torch import nn

from utils.data import denormalize, normalize
from utils.runtime.forward import ForwardSettings

from .inputs import ArrayLike, Targets, as_targets, prepare_saliency, target_scores
from .protocol import EPS


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


def average_drop_increase_gain(model: nn.Module, images: torch.Tensor, saliency: ArrayLike, targets: Targets,
                               mean: Sequence[float], std: Sequence[float],
                               forward: ForwardSettings = ForwardSettings(), *,
                               masking_space: Literal["pixel", "normalized"] = "pixel",
                               clean_scores: Optional[torch.Tensor] = None,
                               class_score: str = "softmax") -> dict[str, torch.Tensor]:
    """Per-image ``p``, ``o`` (the target's score: its softmax, or its sigmoid for multi-label models), ``ad``,
    ``ai`` (increase, bool) and ``ag``.

    ``o`` is scored on ``normalize(denormalize(x) * S)``: the map is a soft mask on [0, 1] pixels, black
    background (``masking_space='normalized'`` multiplies the normalised tensor instead). ``clean_scores``: ``p``
    when the caller already has it (saves one forward).
    """
    device = forward.device_for(model)
    images = images.to(device)
    n, _, h, w = images.shape
    sal = prepare_saliency(saliency, (h, w), n, device)
    targets = as_targets(targets, n, device)
    if clean_scores is None:
        clean_scores = target_scores(forward.logits(model, images), targets, class_score).cpu()
    masked = _mask_images(images, sal, mean, std, masking_space)
    o = target_scores(forward.logits(model, masked), targets, class_score).cpu()
    drop, increase, gain = drop_increase_gain(clean_scores, o)
    return {"p": clean_scores, "o": o, "ad": drop, "ai": increase, "ag": gain}
