"""The saliency methods an evaluation runs, and what of a batch's classification forward they reuse."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch

from utils.explain import SaliencyMethod, canonical_name, create_saliency, method_spec
from utils.runtime.forward import ForwardSettings


def method_names(methods: Sequence[str]) -> list[str]:
    """Registry names for ``--method`` (aliases resolved, duplicates dropped); one line for an unknown name."""
    return list(dict.fromkeys(canonical_name(name) for name in methods))


def build_methods(model: torch.nn.Module, names: Sequence[str], engine: str,
                  forward: Optional[ForwardSettings] = None) -> dict[str, SaliencyMethod]:
    """The methods ``names``; ``engine`` (``--engine``) applies to the methods that have several (the registry
    says which); ``forward`` says how the fast paths' own forwards run (Score-CAM's masked images)."""
    return {name: create_saliency(name, model, engine=method_spec(name).engine_for(engine), forward=forward)
            for name in names}


def reused(methods: Mapping[str, SaliencyMethod]) -> set[str]:
    """The parts of the classification forward (``feature_maps``, ``attentions``) that some method reads."""
    return {part for method in methods.values() for part in method.reuses}
