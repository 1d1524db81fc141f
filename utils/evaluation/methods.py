"""The saliency methods an evaluation runs, and their maps for one batch."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch

from utils.explain import (
    AttentionMaps,
    FastGradientCAM,
    RandomMap,
    SaliencyMethod,
    canonical_name,
    create_saliency,
    normalize_maps,
    reduce_attention,
)
from utils.runtime.forward import ForwardSettings


def method_names(methods: Sequence[str]) -> list[str]:
    """Registry names for ``--method`` (aliases resolved, duplicates dropped); one line for an unknown name."""
    return list(dict.fromkeys(canonical_name(name) for name in methods))


def _is_own_method(name: str) -> bool:
    return name == "random" or name.startswith("attention")


def build_methods(model: torch.nn.Module, names: Sequence[str], engine: str, seed: int,
                  forward: Optional[ForwardSettings] = None) -> dict[str, SaliencyMethod]:
    """The methods ``names``; ``forward`` says how the fast paths' own forwards run (Score-CAM's masked images)."""
    methods = {}
    for name in names:
        kwargs: dict[str, Any] = {"seed": seed} if name == "random" else {}
        # --engine chooses how CAMs run; the stream's attention and the random baseline have one engine only.
        methods[name] = create_saliency(name, model, engine="auto" if _is_own_method(name) else engine,
                                        forward=forward, **kwargs)
    return methods


def _random_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0])


def compute_maps(method: SaliencyMethod, images: torch.Tensor, targets: torch.Tensor, indices: Sequence[int],
                 seed: int = 0, feature_maps: Optional[Sequence[torch.Tensor]] = None,
                 attentions: Optional[Sequence[torch.Tensor]] = None) -> torch.Tensor:
    """Maps of one batch.

    ``feature_maps`` / ``attentions``: what the classification forward of ``images`` already computed (the
    feature maps the pooling head reads, the stream's attention); the fast gradient CAMs and the attention methods
    then reuse them instead of running the backbone again. The random baseline is drawn per image from
    (seed, dataset index), so that its maps do not depend on batching or sharding.
    """
    if isinstance(method, AttentionMaps) and attentions is not None:
        return normalize_maps(reduce_attention(attentions, method.reduction))
    if isinstance(method, FastGradientCAM) and feature_maps is not None:
        return method.from_feature_maps(images, feature_maps, targets)
    if isinstance(method, RandomMap):
        maps = []
        for row, index in enumerate(indices):
            method.generator.manual_seed(_random_seed(seed, int(index)))
            maps.append(method(images[row:row + 1], targets[row:row + 1]))
        return torch.cat(maps)
    return method(images, targets)
