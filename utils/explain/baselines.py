"""Sanity baselines: maps that carry no information about the model."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor

from .base import SaliencyMethod


class RandomMap(SaliencyMethod):
    """Uniform random maps at the last feature map's resolution: the sanity baseline.

    Draws come from a CPU generator seeded once, so a sequence of calls is reproducible per seed and
    identical on every device. The grid size is probed once per input size (one 1-image forward).
    """

    engine = "random"
    resolution = "last feature map"
    name = "random"

    def __init__(self, model: nn.Module, seed: int = 0) -> None:
        super().__init__(model)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self._grid: dict[tuple[int, int], tuple[int, int]] = {}

    def compute(self, images: Tensor, targets: Optional[Tensor]) -> Tensor:
        key = tuple(images.shape[-2:])
        if key not in self._grid:
            with torch.no_grad():
                self._grid[key] = tuple(self.model.forward_features(images[:1]).shape[-2:])
        return torch.rand((images.shape[0], *self._grid[key]), generator=self.generator)
