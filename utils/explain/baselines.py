"""Sanity baselines: maps that carry no information about the model."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from .base import BatchContext, SaliencyMethod, Targets


class RandomMap(SaliencyMethod):
    """Uniform random maps at the last feature map's resolution: the sanity baseline.

    Draws come from a CPU generator seeded once, so a sequence of calls is reproducible per seed and
    identical on every device. In an evaluation (``explain_batch`` with the batch's dataset indices) each image's
    map is drawn from the generator seeded by (the context's seed, its index) instead, so that the maps do not
    depend on batching or sharding. The grid size is probed once per input size (one 1-image forward).
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

    def explain_batch(self, images: Tensor, targets: Targets = None, context: Optional[BatchContext] = None
                      ) -> Tensor:
        """One draw per image, seeded by (``context.seed``, its dataset index); without indices, ``self(...)``."""
        if context is None or context.indices is None:
            return self(images, targets)
        maps = []
        for row, index in enumerate(context.indices):
            self.generator.manual_seed(image_seed(context.seed, int(index)))
            maps.append(self(images[row:row + 1], None if targets is None else targets[row:row + 1]))
        return torch.cat(maps)


def image_seed(seed: int, index: int) -> int:
    """The generator seed of dataset image ``index`` under the run's ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0])
