"""The CA stream's own attention as saliency maps."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from .base import BatchContext, SaliencyMethod, Targets, normalize_maps, upsample_maps

ATTENTION_REDUCTIONS = ("last", "mean", "product")


class AttentionMaps(SaliencyMethod):
    """The CA stream's own attention, from one forward (no gradients); class-agnostic (targets ignored).

    Heads are averaged. ``last``: the last block's map, on its grid. ``mean`` / ``product``: every block's
    map is brought to the finest block grid (the first block's, for CNNs) by bilinear upsampling
    (align_corners=False) and the maps are averaged / multiplied there. Each block's map is first scaled
    by its number of positions (uniform attention = 1 everywhere), so that blocks of different sizes weigh
    the same in the mean; the product is unaffected by that scaling.
    """

    engine = "attention"

    def __init__(self, model: nn.Module, reduction: str = "last") -> None:
        super().__init__(model)
        if getattr(model, "stream", None) is None:
            raise ValueError(f"attention maps need --pool ca or ca_last "
                             f"(this model pools with {getattr(model, 'pool', 'gap')})")
        if reduction not in ATTENTION_REDUCTIONS:
            raise ValueError(f"unknown attention reduction '{reduction}': expected one of "
                             f"{', '.join(ATTENTION_REDUCTIONS)}")
        self.reduction = reduction
        self.name = "attention" if reduction == "last" else f"attention_{reduction}"
        self.resolution = "last CA block's grid" if reduction == "last" else "finest CA block's grid"

    def compute(self, images: Tensor, targets: Optional[Tensor]) -> Tensor:
        with torch.no_grad():
            _, attentions = self.model.forward_with_attention(images)
        return reduce_attention(attentions, self.reduction)

    def explain_batch(self, images: Tensor, targets: Targets = None, context: Optional[BatchContext] = None
                      ) -> Tensor:
        """The maps from the attention of the batch's classification forward, where ``context`` holds it."""
        if context is None or context.attentions is None:
            return self(images, targets)
        return normalize_maps(reduce_attention(context.attentions, self.reduction))


def reduce_attention(attentions: Sequence[Tensor], reduction: str = "last") -> Tensor:
    """Combines per-block attention (B, heads, H_k, W_k) into maps (B, h, w); see :class:`AttentionMaps`."""
    maps = [a.float().mean(dim=1) for a in attentions]
    if reduction == "last":
        return maps[-1]
    size = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])
    densities = [upsample_maps(m * (m.shape[-2] * m.shape[-1]), tuple(size)) for m in maps]
    stacked = torch.stack(densities)
    if reduction == "mean":
        return stacked.mean(dim=0)
    if reduction == "product":
        # In float64 and scaled to max 1 there: a product of peaked densities (up to H*W each) could
        # overflow float32 on large grids; the scale is irrelevant after min-max normalisation.
        product = stacked.double().prod(dim=0)
        peak = product.flatten(1).max(dim=1).values.clamp_min(torch.finfo(torch.float64).tiny)
        return (product / peak[:, None, None]).float()
    raise ValueError(f"unknown attention reduction '{reduction}'")
