"""The unit of an evaluation: a ``(dataset row, class)`` pair. Maps, metrics and saliency files hold one entry per
pair, in the order of :func:`pair_key`; a single-label evaluation has one pair per image (:mod:`utils.task` says
which classes of an image are explained)."""
from __future__ import annotations

from typing import Sequence

import torch

Pair = tuple[int, int]  # (dataset row, class)


def pair_key(pair: Pair, num_classes: int) -> int:
    """A pair as one integer that sorts pairs by row, then class (the order of every output)."""
    return pair[0] * num_classes + pair[1]


def select(tensor: torch.Tensor, positions: Sequence[int]) -> torch.Tensor:
    """The rows of a batch tensor for a list of pair positions (the batch itself when it is one pair per image)."""
    if list(positions) == list(range(tensor.shape[0])):
        return tensor
    return tensor[torch.as_tensor(positions, dtype=torch.long, device=tensor.device)]
