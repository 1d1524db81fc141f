"""Per-family backbone facts in one table (as timm's ``default_cfgs``): where the CA stream taps the backbone,
which module is the CAM target, how the stream is initialised, and the architectures the tests build.

A family is a timm model class (``ResNet``, ``ConvNeXt``, ``EfficientNet``, or one registered with
:func:`register_family`); a backbone belongs to the family of the nearest class in its MRO. A timm CNN of no
registered family gets :data:`GENERIC`: a tap per ``feature_info`` stage and the last stage as the CAM target.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch.nn as nn
from timm.models.convnext import ConvNeXt
from timm.models.efficientnet import EfficientNet
from timm.models.resnet import ResNet


@dataclass(frozen=True)
class BackboneFamily:
    """The facts of one backbone family.

    ``stream_taps(backbone)``: the modules whose outputs the ``ca`` stream attends, shallow to deep (a tap whose
    output is the last feature map is attended once, last). ``cam_target_layer(backbone)``: the module whose output
    is the last feature map (the usual CAM target). ``init_stream(stream)``: re-initialises the stream's freshly
    built modules where the family's reference code did (None: the stream keeps its own init).
    ``architectures``: timm names of the family that the tests build with every pooling head.
    """

    name: str
    model_class: type
    stream_taps: Callable[[nn.Module], list[str]]
    cam_target_layer: Callable[[nn.Module], nn.Module]
    init_stream: Optional[Callable[[nn.Module], None]] = None
    architectures: tuple[str, ...] = ()


def _feature_info_taps(backbone: nn.Module) -> list[str]:
    return [info["module"] for info in backbone.feature_info]


def _last_feature_info_stage(backbone: nn.Module) -> nn.Module:
    return backbone.get_submodule(backbone.feature_info[-1]["module"])


def _linears_truncated_normal(stream: nn.Module) -> None:
    """ConvNeXt's model-wide init, which reached the reference's blocks (built inside the backbone's constructor):
    every Linear truncated normal (std 0.02) with zero bias."""
    for module in stream.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)


GENERIC = BackboneFamily("generic", nn.Module, _feature_info_taps, _last_feature_info_stage)

_FAMILIES: dict[type, BackboneFamily] = {}


def register_family(family: BackboneFamily) -> BackboneFamily:
    """Adds a backbone family to the table that :func:`family_of` (and so the classifier) reads.

    Example::

        from timm.models.regnet import RegNet
        from models import BackboneFamily, register_family

        register_family(BackboneFamily(
            name="regnet", model_class=RegNet,
            stream_taps=lambda backbone: ["stem", "s1", "s2", "s3"],
            cam_target_layer=lambda backbone: backbone.final_conv,
            architectures=("regnety_008",)))

    Args:
        family: the family's facts; its ``model_class`` must not have a family yet (ValueError), and its
            ``architectures`` must not belong to another family.

    Returns:
        ``family``, so that a module can keep it under a name.
    """
    if family.model_class in _FAMILIES:
        raise ValueError(f"backbone family of {family.model_class.__name__} already registered "
                         f"('{_FAMILIES[family.model_class].name}')")
    taken = set(family.architectures) & set(supported_backbones())
    if taken:
        raise ValueError(f"backbone family '{family.name}': {', '.join(sorted(taken))} already belong to a family")
    _FAMILIES[family.model_class] = family
    return family


def family_of(backbone: nn.Module) -> BackboneFamily:
    """The family of ``backbone``: that of the nearest registered class in its MRO, else :data:`GENERIC`."""
    for cls in type(backbone).__mro__:
        if cls in _FAMILIES:
            return _FAMILIES[cls]
    return GENERIC


def supported_backbones() -> tuple[str, ...]:
    """Every registered family's ``architectures``, in registration order."""
    return tuple(name for family in _FAMILIES.values() for name in family.architectures)


register_family(BackboneFamily(
    name="resnet", model_class=ResNet,
    # after the stem's max-pool and after layer1..3 (layer4 is the final map), as the reference; ResNet's init
    # touches only convolutions and BatchNorm, so the reference's blocks kept their xavier-uniform Linears
    stream_taps=lambda backbone: ["maxpool", "layer1", "layer2", "layer3"],
    cam_target_layer=lambda backbone: backbone.layer4[-1],
    architectures=("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                   "wide_resnet50_2"),
))
register_family(BackboneFamily(
    name="convnext", model_class=ConvNeXt,
    # the stem and the 2nd and 3rd downsampling layers, as the reference places them (its deepest stage's output
    # is never attended): this gives its parameter counts exactly
    stream_taps=lambda backbone: ["stem", "stages.1.downsample", "stages.2.downsample"],
    cam_target_layer=lambda backbone: backbone.stages[-1].blocks[-1],
    init_stream=_linears_truncated_normal,
    architectures=("convnext_tiny", "convnext_small", "convnext_base"),
))
register_family(BackboneFamily(
    name="efficientnet", model_class=EfficientNet,
    # the stem and every block stage, then the head convolution (the final map); xavier-uniform Linears (the
    # reference's EfficientNet re-init was never executed)
    stream_taps=lambda backbone: ["bn1"] + [f"blocks.{i}" for i in range(len(backbone.blocks))],
    cam_target_layer=lambda backbone: backbone.bn2,
    architectures=("efficientnet_b0", "tf_efficientnet_lite0"),
))
