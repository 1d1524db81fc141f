"""The gradient-family CAMs with one backbone forward: only the pooling head is differentiated."""
from __future__ import annotations

import contextlib
from typing import Optional, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from utils.runtime.forward import ForwardSettings

from .base import (
    BatchContext,
    SaliencyMethod,
    Targets,
    model_device_dtype,
    normalize_maps,
    produces_last_feature_map,
    side_effect_free,
)
from .package import GradCamPackageMethod

FAST_VARIANTS: dict[str, str] = {  # fast-path variant -> the package class it reproduces
    "gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM", "hirescam": "HiResCAM",
    "layercam": "LayerCAM", "gradcam_elementwise": "GradCAMElementWise",
}


class FastGradientCAM(SaliencyMethod):
    """The gradient-family CAMs on the last feature map with one backbone forward and no backbone backward.

    The backbone runs once under ``no_grad``; only the pooling head (GAP + fc, or the CA stream + fc) is
    recomputed on a leaf copy ``A`` of the last feature map, and ``d(sum of target logits)/dA`` is taken
    with ``torch.autograd.grad`` (no parameter gradients). Earlier feature maps read by the stream are held
    constant: they do not depend on ``A``, so this is the same derivative the package's full backward gives.
    The channel weights follow pytorch-grad-cam 1.5.7's formulas (same epsilons); they are combined in
    float32 (Grad-CAM++ cubes gradients, which underflow in half precision).

    When the target layer's output is not the last feature map (another ``target_layer``, or a family whose
    default target is followed by more layers), the call is delegated to the package.

    ``forward.compile``: the head's forward, its backward and the CAM arithmetic are compiled into one graph
    (``torch.compile``, tracing ``torch.autograd.grad``), so that they run as a few fused kernels instead of one
    launch per operation (what costs on a GPU once the backbone is fast).
    """

    engine = "fast"

    def __init__(self, model: nn.Module, variant: str = "gradcam", target_layer: Optional[nn.Module] = None,
                 forward: Optional[ForwardSettings] = None) -> None:
        super().__init__(model)
        if variant not in FAST_VARIANTS:
            raise ValueError(f"no fast path for '{variant}': fast variants are {', '.join(FAST_VARIANTS)}")
        self.variant = variant
        self.name = variant
        self.target_layer = model.cam_target_layer if target_layer is None else target_layer
        self.resolution = "target layer's feature map"
        # None until the first call finds out whether the target layer produces the last feature map.
        self.uses_fast_path: Optional[bool] = None if self.target_layer is model.cam_target_layer else False
        self._package: Optional[GradCamPackageMethod] = None
        self._head_cam = self._eager_head_cam
        if forward is not None and forward.compile:
            self._head_cam = torch.compile(self._eager_head_cam)

    def close(self) -> None:
        self._package = None

    def _fallback(self) -> GradCamPackageMethod:
        if self._package is None:
            self._package = GradCamPackageMethod(self.model, FAST_VARIANTS[self.variant], [self.target_layer])
        return self._package

    def compute(self, images: Tensor, targets: Optional[Tensor]) -> Tensor:
        if not self._applies(images):
            return self._fallback().compute(images, targets)
        with torch.no_grad():
            feature_maps = self.model.forward_feature_maps(images)
        return self._cam(feature_maps, targets)

    def explain_batch(self, images: Tensor, targets: Targets = None, context: Optional[BatchContext] = None
                      ) -> Tensor:
        """The normalised maps of ``images`` from the feature maps their classification forward already computed
        (``context.feature_maps``, ``model.forward_feature_maps(images)``): the backbone does not run again."""
        feature_maps = None if context is None else context.feature_maps
        if feature_maps is None or not self._applies(images):
            return self(images, targets)
        images, targets = self.checked_inputs(images, targets)
        with side_effect_free(self.model):
            maps = self._cam(feature_maps, targets)
        return normalize_maps(maps.to(images.device))

    def _applies(self, images: Tensor) -> bool:
        """Whether the target layer produces the last feature map (else the package runs); found out once, with a
        one-image forward."""
        if self.uses_fast_path is None:
            self.uses_fast_path = produces_last_feature_map(self.model, self.target_layer, images[:1])
        return self.uses_fast_path

    def _cam(self, feature_maps: Sequence[Tensor], targets: Optional[Tensor]) -> Tensor:
        # the head in the model's precision: the feature maps of a bf16 classification forward are bf16
        dtype = model_device_dtype(self.model)[1]
        with _tracing_autograd():
            return self._head_cam([m.detach().to(dtype) for m in feature_maps], targets)

    def _eager_head_cam(self, feature_maps: list[Tensor], targets: Optional[Tensor]) -> Tensor:
        activations = feature_maps[-1].requires_grad_()
        with torch.enable_grad():
            logits, _ = self.model.forward_head(feature_maps[:-1] + [activations])
            if targets is None:
                targets = logits.argmax(dim=1)
            score = logits.gather(1, targets[:, None]).sum()
            (grads,) = torch.autograd.grad(score, activations)
        return gradient_cam(self.variant, activations.detach().float(), grads.float())


def _tracing_autograd() -> contextlib.AbstractContextManager:
    """Lets torch.compile trace torch.autograd.grad into the graph (a graph break otherwise) where torch knows how."""
    if not hasattr(torch._dynamo.config, "trace_autograd_ops"):
        return contextlib.nullcontext()
    return torch._dynamo.config.patch(trace_autograd_ops=True)


def gradient_cam(variant: str, activations: Tensor, grads: Tensor) -> Tensor:
    """The CAM (B, h, w), before ReLU and normalisation, of a gradient-family variant (package formulas)."""
    if variant == "hirescam":
        return (grads * activations).sum(dim=1)
    if variant == "layercam":
        return (grads.clamp_min(0) * activations).sum(dim=1)
    if variant == "gradcam_elementwise":
        return (grads * activations).clamp_min(0).sum(dim=1)
    if variant == "gradcam":
        weights = grads.mean(dim=(2, 3))
    elif variant == "gradcam++":
        # Closed form of Chattopadhyay et al. (eq. 19), with the package's epsilon; zero where g == 0.
        grads2 = grads.pow(2)
        grads3 = grads2 * grads
        sum_activations = activations.sum(dim=(2, 3), keepdim=True)
        alpha = grads2 / (2 * grads2 + sum_activations * grads3 + 1e-6)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        weights = (grads.clamp_min(0) * alpha).sum(dim=(2, 3))
    elif variant == "xgradcam":
        sum_activations = activations.sum(dim=(2, 3), keepdim=True)
        weights = (grads * activations / (sum_activations + 1e-7)).sum(dim=(2, 3))
    else:
        raise ValueError(f"unknown gradient CAM variant '{variant}'")
    return (weights[:, :, None, None] * activations).sum(dim=1)
