"""Saliency methods on one small base class (:class:`SaliencyMethod`, as pytorch-grad-cam's ``BaseCAM``): the
grad-cam adapter, the fast gradient family, the CA stream's attention and a random baseline."""
from .attention import ATTENTION_REDUCTIONS, AttentionMaps, reduce_attention
from .base import SaliencyMethod, normalize_maps, overlay, upsample_maps
from .baselines import RandomMap
from .gradient import FAST_VARIANTS, FastGradientCAM, gradient_cam
from .package import CAVEATS, PACKAGE_HELPERS, UNSUPPORTED_REASONS, GradCamPackageMethod, package_cam_classes
from .registry import ENGINES, available_methods, canonical_name, create_saliency

__all__ = [
    "ATTENTION_REDUCTIONS", "AttentionMaps", "CAVEATS", "ENGINES", "FAST_VARIANTS", "FastGradientCAM",
    "GradCamPackageMethod", "PACKAGE_HELPERS", "RandomMap", "SaliencyMethod", "UNSUPPORTED_REASONS",
    "available_methods", "canonical_name", "create_saliency", "gradient_cam", "normalize_maps", "overlay",
    "package_cam_classes", "reduce_attention", "upsample_maps",
]
