"""Every CAM class of pytorch-grad-cam behind :class:`~utils.explain.base.SaliencyMethod`: the package's own maps,
captured at the target layer's resolution before its OpenCV upsampling."""
from __future__ import annotations

import contextlib
import io
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from .base import SaliencyMethod

# Exports of pytorch_grad_cam that are building blocks, not saliency methods.
PACKAGE_HELPERS = ("ActivationsAndGradients", "AblationLayer", "AblationLayerVit", "AblationLayerFasterRCNN")

# Exported classes that do not give a class-targeted map through this interface (docs/usage.md lists them).
UNSUPPORTED_REASONS: dict[str, str] = {
    "GuidedBackpropReLUModel": "guided backpropagation is a pixel-space gradient, not a CAM: it takes one image "
                               "and one class per call, returns an (H, W, 3) gradient image and swaps the "
                               "model's ReLU modules while it runs (combine it with a CAM yourself)",
    "DeepFeatureFactorization": "not a class saliency map: it factorises the activations into unlabelled "
                                "concepts (NMF) and returns per-concept maps (use run_dff_on_image)",
}

# Known limits of supported methods on this project's models (docs/usage.md lists them too).
CAVEATS: dict[str, str] = {
    "FullGrad": "forms its map at the input resolution; the package collects the biases of exact nn.Conv2d / "
                "nn.BatchNorm2d modules only, so timm's BatchNormAct2d (EfficientNet), LayerNorm and Linear "
                "biases (ConvNeXt's MLPs, the CA stream) are left out and the decomposition is incomplete there",
    "SESS": "forms its map at the input resolution (patch CAMs pasted back into image coordinates); "
            "12 scales by default, i.e. ~100 forward/backward passes per image",
    "ScoreCAM": "one forward per channel of the target layer (2048 for ResNet-50); the package runs one image at "
                "a time because it materialises channels x image for the whole batch (the default fast path takes "
                "any batch)",
    "AblationCAM": "one forward per channel of the target layer; weights divide by the original score, so a "
                   "negative target logit flips them; where the target layer's minimum is not 0 the package's "
                   "ablation value depends on its inner batch (the fast path reproduces it)",
    "FinerCAM": "Grad-CAM of the target logit minus its 3 most similar classes (by logit distance, as the "
                "package picks them): one extra forward to choose them",
    "RandomCAM": "random channel weights from numpy's global generator (not seeded): use 'random' for a "
                 "reproducible baseline",
    "RefineCAM": "with target layers of different resolutions it forms its map at the input resolution",
}

# Package classes whose maps are formed in image space: their native resolution is the input's.
_INPUT_RESOLUTION = ("FullGrad", "SESS")
# Package classes scored one image at a time (memory: the package expands every channel of every image).
_PER_IMAGE = ("ScoreCAM",)
# Package classes that draw a tqdm bar per image in their inner loop.
_PROGRESS_BARS = ("ScoreCAM", "AblationCAM")


def package_cam_classes() -> dict[str, type]:
    """Every saliency class exported by ``pytorch_grad_cam`` (helpers left out), by class name."""
    import pytorch_grad_cam

    return {name: obj for name, obj in vars(pytorch_grad_cam).items()
            if isinstance(obj, type) and not name.startswith("_") and name not in PACKAGE_HELPERS}


_NATIVE_CLASSES: dict[type, type] = {}


def _native(cam_class: type) -> type:
    """A subclass of a BaseCAM class whose CAM is 'resized' to its own feature-map size.

    BaseCAM resizes each layer's CAM to ``get_target_width_height(input)`` (cv2.resize); returning the
    captured activation's own size makes that resize a copy, so the map is the package's own
    pre-upsampling CAM (min-max normalised as usual). With several target layers: the finest one's size.
    """
    if cam_class not in _NATIVE_CLASSES:
        def get_target_width_height(self, input_tensor: Tensor) -> tuple[int, int]:
            sizes = [tuple(a.shape[-2:]) for a in self.activations_and_grads.activations]
            if not sizes or len(input_tensor.shape) != 4:
                return cam_class.get_target_width_height(self, input_tensor)
            height, width = max(sizes, key=lambda size: size[0] * size[1])
            return width, height

        _NATIVE_CLASSES[cam_class] = type(f"Native{cam_class.__name__}", (cam_class,),
                                          {"get_target_width_height": get_target_width_height})
    return _NATIVE_CLASSES[cam_class]


def _release(cam: Any) -> None:
    """Removes the hooks of a package CAM and of the CAMs it wraps (FinerCAM, SESS, RefineCAM)."""
    for obj in [cam, getattr(cam, "base_cam", None), *getattr(cam, "base_cam_per_layer", [])]:
        hooks = getattr(obj, "activations_and_grads", None)
        if hooks is not None:
            hooks.release()


class GradCamPackageMethod(SaliencyMethod):
    """Any CAM class exported by ``pytorch_grad_cam``, with ``ClassifierOutputTarget`` per image.

    ``name`` is the package's class name (case-insensitive). The CAM object is built for each call and
    released in ``finally``: the package's hooks record every forward of the model while they exist.
    ``batch_size`` is the inner batch of ScoreCAM / AblationCAM / SESS; ``progress`` shows their tqdm
    bars (otherwise stderr is muted during the call). ``alpha`` / ``comparisons`` configure FinerCAM.
    """

    engine = "package"

    def __init__(
            self,
            model: nn.Module,
            name: str,
            target_layers: Optional[Sequence[nn.Module]] = None,
            batch_size: int = 64,
            progress: bool = False,
            eigen_smooth: bool = False,
            aug_smooth: bool = False,
            alpha: float = 1.0,
            comparisons: int = 3,
            **cam_kwargs: Any,
    ) -> None:
        super().__init__(model)
        classes = package_cam_classes()
        by_lower = {key.lower(): key for key in classes}
        class_name = by_lower.get(name.lower())
        if class_name is None:
            raise ValueError(f"pytorch_grad_cam has no CAM class '{name}': it exports {', '.join(sorted(classes))}")
        if class_name in UNSUPPORTED_REASONS:
            raise ValueError(f"{class_name} is not supported: {UNSUPPORTED_REASONS[class_name]}")
        self.class_name = class_name
        self.cam_class = classes[class_name]
        self.name = class_name
        if target_layers is None:
            target_layers = [model.cam_target_layer]
        self.target_layers = list(target_layers)
        self.batch_size = batch_size
        self.progress = progress
        self.eigen_smooth = eigen_smooth
        self.aug_smooth = aug_smooth
        self.alpha = alpha
        self.comparisons = comparisons
        self.cam_kwargs = cam_kwargs
        multi_resolution_refine = class_name == "RefineCAM" and len(self.target_layers) > 1
        self.native = class_name not in _INPUT_RESOLUTION and not multi_resolution_refine
        self.resolution = "target layer's feature map" if self.native else "input"

    def _build(self) -> Any:
        import pytorch_grad_cam as pgc

        name, kwargs = self.class_name, dict(self.cam_kwargs)
        if name == "FullGrad":
            return pgc.FullGrad(self.model, [], **kwargs)  # it uses every bias layer; [] avoids its warning
        if name == "AblationCAM":
            # A fresh layer: the package's default argument is one instance shared by every AblationCAM.
            kwargs.setdefault("ablation_layer", pgc.AblationLayer())
            kwargs.setdefault("batch_size", self.batch_size)
        if name in ("FinerCAM", "RefineCAM"):
            base = kwargs.pop("base_method", pgc.GradCAM if name == "FinerCAM" else pgc.GradCAMPlusPlus)
            kwargs["base_method"] = _native(base) if self.native else base
            return self.cam_class(self.model, self.target_layers, **kwargs)
        if name == "SESS":
            kwargs.setdefault("batch_size", self.batch_size)
            return self.cam_class(self.model, self.target_layers, **kwargs)
        cam_class = _native(self.cam_class) if self.native else self.cam_class
        cam = cam_class(self.model, self.target_layers, **kwargs)
        if name == "ScoreCAM":
            cam.batch_size = self.batch_size
        return cam

    def _package_targets(self, images: Tensor, targets: Optional[Tensor]) -> Optional[list]:
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, FinerWeightedTarget

        if self.class_name != "FinerCAM":
            return None if targets is None else [ClassifierOutputTarget(int(t)) for t in targets]
        # FinerCAM contrasts the target with its most similar classes; given targets, the package would use
        # them as plain logits (= Grad-CAM), so the contrastive targets are built here as the package does.
        with torch.no_grad():
            logits = self.model(images).float()
        if targets is None:
            targets = logits.argmax(dim=1)
        result = []
        for row, target in zip(logits, targets.tolist()):
            order = [c for c in torch.argsort((row - row[target]).abs()).tolist() if c != target]
            result.append(FinerWeightedTarget(target, order[:self.comparisons], self.alpha))
        return result

    def compute(self, images: Tensor, targets: Optional[Tensor]) -> Tensor:
        from pytorch_grad_cam.base_cam import BaseCAM

        if self.class_name in _PER_IMAGE and images.shape[0] > 1:
            return torch.cat([self.compute(images[i:i + 1], None if targets is None else targets[i:i + 1])
                              for i in range(images.shape[0])])
        package_targets = self._package_targets(images, targets)
        # stderr muted unless asked: ScoreCAM / AblationCAM draw a progress bar per image.
        mute = self.class_name in _PROGRESS_BARS and not self.progress
        cam = None
        try:
            cam = self._build()
            call_kwargs: dict[str, Any] = {"eigen_smooth": self.eigen_smooth}
            if isinstance(cam, BaseCAM):
                call_kwargs["aug_smooth"] = self.aug_smooth
            # The package backpropagates: a caller's no_grad must not break it.
            with torch.enable_grad(), (contextlib.redirect_stderr(io.StringIO()) if mute
                                       else contextlib.nullcontext()):
                maps = cam(images, package_targets, **call_kwargs)
        finally:
            if cam is not None:
                _release(cam)
                self._restore_ablated_layer(cam)
        return torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))

    def _restore_ablated_layer(self, cam: Any) -> None:
        """AblationCAM swaps the target layer for its ablation layer and swaps back only on success."""
        ablation_layer = getattr(cam, "ablation_layer", None)
        if ablation_layer is None or not any(m is ablation_layer for m in self.model.modules()):
            return
        from pytorch_grad_cam.utils.find_layers import replace_layer_recursive

        for layer in self.target_layers:
            if not any(m is layer for m in self.model.modules()):
                replace_layer_recursive(self.model, ablation_layer, layer)
                break
