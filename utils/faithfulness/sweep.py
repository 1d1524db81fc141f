"""The engine shared by insertion/deletion and +/- perturbation: forwards of many blends of two images, chunked."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from utils.runtime.forward import ForwardSettings


def sweep(model: nn.Module, start: torch.Tensor, finish: torch.Tensor, rank: torch.Tensor, thresholds: torch.Tensor,
          targets: torch.Tensor, reduce: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
          forward: ForwardSettings) -> torch.Tensor:
    """(N, T) ``reduce(logits, target)`` of every blend ``where(rank < thresholds[t], finish, start)``.

    Blends are built on the device by one broadcast compare per chunk of (steps x images), at most
    ``forward.chunk`` forwarded at once, so memory does not grow with the number of steps and no Python loop
    touches pixels.
    """
    shape = torch.broadcast_shapes(start.shape, finish.shape)   # a substrate may be one (1, C, H, W) image
    n, _, h, w = shape
    start, finish = start.expand(shape), finish.expand(shape)
    rank = rank.view(n, 1, h, w)
    num_images = min(n, forward.chunk)
    num_steps = max(1, forward.chunk // num_images)
    columns: list[torch.Tensor] = []
    with torch.inference_mode():
        for i in range(0, n, num_images):
            rows, block = [], slice(i, i + num_images)
            for t in range(0, len(thresholds), num_steps):
                thr = thresholds[t:t + num_steps]
                mask = rank[None, block] < thr.view(-1, 1, 1, 1, 1)        # (steps, images, 1, H, W)
                x = torch.where(mask, finish[None, block], start[None, block]).flatten(0, 1)
                out = reduce(forward.logits(model, x), targets[block].repeat(len(thr)))
                rows.append(out.view(len(thr), -1).T)
            columns.append(torch.cat(rows, dim=1))
    return torch.cat(columns).cpu()
