"""The gradient-family CAMs with one backbone forward: only the pooling head is differentiated."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from .base import SaliencyMethod, Targets, normalize_maps, side_effect_free
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
    """

    engine = "fast"

    def __init__(self, model: nn.Module, variant: str = "gradcam", target_layer: Optional[nn.Module] = None) -> None:
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

    def from_feature_maps(self, images: Tensor, feature_maps: Sequence[Tensor], targets: Targets) -> Tensor:
        """The normalised maps of ``images`` from the feature maps their classification forward already computed
        (``model.forward_feature_maps(images)``): the backbone does not run again."""
        if not self._applies(images):
            return self(images, targets)
        images, targets = self.checked_inputs(images, targets)
        with side_effect_free(self.model):
            maps = self._cam(feature_maps, targets)
        return normalize_maps(maps.to(images.device))

    def _applies(self, images: Tensor) -> bool:
        """Whether the target layer produces the last feature map (else the package runs); found out once, with a
        one-image forward."""
        if self.uses_fast_path is None:
            captured: list[Tensor] = []
            handle = self.target_layer.register_forward_hook(lambda module, args, output: captured.append(output))
            try:
                with torch.no_grad(), side_effect_free(self.model):
                    final = self.model.forward_features(images[:1].to(next(self.model.parameters()).device))
            finally:
                handle.remove()
            self.uses_fast_path = bool(captured) and captured[-1] is final
        return self.uses_fast_path

    def _cam(self, feature_maps: Sequence[Tensor], targets: Optional[Tensor]) -> Tensor:
        activations = feature_maps[-1].detach().requires_grad_()
        with torch.enable_grad():
            logits, _ = self.model.forward_head([m.detach() for m in feature_maps[:-1]] + [activations])
            if targets is None:
                targets = logits.argmax(dim=1)
            score = logits.gather(1, targets[:, None]).sum()
            (grads,) = torch.autograd.grad(score, activations)
        return gradient_cam(self.variant, activations.detach().float(), grads.float())


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
