"""Localisation against object masks: the pointing game and the energy-based pointing game."""
from __future__ import annotations

import torch

from .inputs import ArrayLike, prepare_saliency


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
