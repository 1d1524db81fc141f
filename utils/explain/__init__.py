"""Saliency methods on one small base class (:class:`SaliencyMethod`, as pytorch-grad-cam's ``BaseCAM``): the
grad-cam adapter, the fast paths (gradient family, Score-CAM / Ablation-CAM, FullGrad), the CA stream's attention
and a random baseline."""
from .attention import ATTENTION_REDUCTIONS, AttentionMaps, reduce_attention
from .base import SaliencyMethod, normalize_maps, overlay, upsample_maps
from .baselines import RandomMap
from .fullgrad import FastFullGrad
from .gradient import FAST_VARIANTS, FastGradientCAM, gradient_cam
from .package import CAVEATS, PACKAGE_HELPERS, UNSUPPORTED_REASONS, GradCamPackageMethod, package_cam_classes
from .perchannel import PER_CHANNEL_VARIANTS, PerChannelCAM
from .registry import ENGINES, FAST_NAMES, available_methods, canonical_name, create_saliency

__all__ = [
    "ATTENTION_REDUCTIONS", "AttentionMaps", "CAVEATS", "ENGINES", "FAST_NAMES", "FAST_VARIANTS", "FastFullGrad",
    "FastGradientCAM", "GradCamPackageMethod", "PACKAGE_HELPERS", "PER_CHANNEL_VARIANTS", "PerChannelCAM",
    "RandomMap", "SaliencyMethod", "UNSUPPORTED_REASONS", "available_methods", "canonical_name", "create_saliency",
    "gradient_cam", "normalize_maps", "overlay", "package_cam_classes", "reduce_attention", "upsample_maps",
]
