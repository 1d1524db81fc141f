"""Saliency methods on one small base class (:class:`SaliencyMethod`, as pytorch-grad-cam's ``BaseCAM``): the
grad-cam adapter, the fast paths (gradient family, Score-CAM / Ablation-CAM, FullGrad), the CA stream's attention
and a random baseline, by name in one registry (:func:`create_saliency`, :func:`register_method`)."""
from .attention import ATTENTION_REDUCTIONS, AttentionMaps, reduce_attention
from .base import REUSABLE, BatchContext, SaliencyMethod, normalize_maps, overlay, upsample_maps
from .baselines import RandomMap, image_seed
from .fullgrad import FastFullGrad
from .gradient import FAST_VARIANTS, FastGradientCAM, gradient_cam
from .package import CAVEATS, PACKAGE_HELPERS, UNSUPPORTED_REASONS, GradCamPackageMethod, package_cam_classes
from .perchannel import PER_CHANNEL_VARIANTS, PerChannelCAM
from .registry import (
    ENGINES,
    MethodSpec,
    available_methods,
    canonical_name,
    create_saliency,
    fast_names,
    method_spec,
    register_method,
)

__all__ = [
    "ATTENTION_REDUCTIONS", "AttentionMaps", "BatchContext", "CAVEATS", "ENGINES", "FAST_VARIANTS", "FastFullGrad",
    "FastGradientCAM", "GradCamPackageMethod", "MethodSpec", "PACKAGE_HELPERS", "PER_CHANNEL_VARIANTS",
    "PerChannelCAM", "REUSABLE", "RandomMap", "SaliencyMethod", "UNSUPPORTED_REASONS", "available_methods",
    "canonical_name", "create_saliency", "fast_names", "gradient_cam", "image_seed", "method_spec",
    "normalize_maps", "overlay", "package_cam_classes", "reduce_attention", "register_method", "upsample_maps",
]
