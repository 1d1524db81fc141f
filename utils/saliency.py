"""Saliency maps behind one interface: CAM methods (pytorch-grad-cam, or a fast path for the gradient
family) and the CA stream's own attention.

Every method is a :class:`SaliencyMethod`: ``method(images, targets) -> maps`` with ``images`` (B, 3, H, W),
``targets`` (B,) class indices (``None``: the model's top-1) and ``maps`` (B, h, w) float32 on the model's
device, at the method's *native* resolution (the grid on which it forms the map: the target layer's
feature map for CAMs, see ``resolution``), ReLU'd and min-max normalised per image to [0, 1] (a constant
map becomes all zeros, never NaN). Upsampling is the caller's business (:func:`upsample_maps`), so that
evaluation code decides it once, the same way for every method.

Every call runs the model in eval mode and leaves it as it was: training flags of every module, the
parameters' ``.grad`` and the module hooks are restored, also when the call raises. Hooks live only for
the duration of one call, so a method object can stay alive across thousands of batches (and across
training steps on the same model) without capturing anything in between.

``create_saliency(name, model)`` is the entry point; ``available_methods()`` lists the names.
"""
from __future__ import annotations

import contextlib
import io
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

Targets = Optional[Union[Tensor, Sequence[int]]]

# Exports of pytorch_grad_cam that are building blocks, not saliency methods.
PACKAGE_HELPERS = ("ActivationsAndGradients", "AblationLayer", "AblationLayerVit", "AblationLayerFasterRCNN")

# Exported classes that do not give a class-targeted map through this interface (the README lists them).
UNSUPPORTED_REASONS: dict[str, str] = {
    "GuidedBackpropReLUModel": "guided backpropagation is a pixel-space gradient, not a CAM: it takes one image "
                               "and one class per call, returns an (H, W, 3) gradient image and swaps the "
                               "model's ReLU modules while it runs (combine it with a CAM yourself)",
    "DeepFeatureFactorization": "not a class saliency map: it factorises the activations into unlabelled "
                                "concepts (NMF) and returns per-concept maps (use run_dff_on_image)",
}

# Known limits of supported methods on this project's models (the README lists them too).
CAVEATS: dict[str, str] = {
    "FullGrad": "forms its map at the input resolution; the package collects the biases of exact nn.Conv2d / "
                "nn.BatchNorm2d modules only, so timm's BatchNormAct2d (EfficientNet), LayerNorm and Linear "
                "biases (ConvNeXt's MLPs, the CA stream) are left out and the decomposition is incomplete there",
    "SESS": "forms its map at the input resolution (patch CAMs pasted back into image coordinates); "
            "12 scales by default, i.e. ~100 forward/backward passes per image",
    "ScoreCAM": "one forward per channel of the target layer (2048 for ResNet-50); run one image at a time "
                "because the package materialises channels x image for the whole batch",
    "AblationCAM": "one forward per channel of the target layer; weights divide by the original score, so a "
                   "negative target logit flips them",
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

FAST_VARIANTS: dict[str, str] = {  # fast-path variant -> the package class it reproduces
    "gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM", "hirescam": "HiResCAM",
    "layercam": "LayerCAM", "gradcam_elementwise": "GradCAMElementWise",
}


# --------------------------------------------------------------------------------------------------
# helpers


def normalize_maps(maps: Tensor) -> Tensor:
    """ReLU, then per-image min-max to [0, 1]; constant (e.g. all-zero) maps become zeros, NaN becomes 0."""
    maps = torch.nan_to_num(maps.float(), nan=0.0).clamp_min(0)
    flat = maps.flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    # Dividing by a clamped span and masking keeps 0/0 out, without an epsilon that would bias small maps.
    scaled = (flat - low) / span.clamp_min(torch.finfo(flat.dtype).tiny)
    return torch.where(span > 0, scaled, torch.zeros_like(scaled)).view_as(maps)


def upsample_maps(maps: Tensor, size: Union[int, tuple[int, int]]) -> Tensor:
    """Bilinear (align_corners=False) resize of (B, h, w) or (h, w) maps to ``size``; [0, 1] stays in [0, 1]."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    squeeze = maps.dim() == 2
    maps = maps[None] if squeeze else maps
    if tuple(maps.shape[-2:]) != size:
        maps = F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    return maps[0] if squeeze else maps


def overlay(image_uint8: Union[np.ndarray, Tensor], map01: Union[np.ndarray, Tensor], alpha: float = 0.5) -> np.ndarray:
    """RGB uint8 (H, W, 3) image blended with a [0, 1] map (any resolution) in OpenCV's JET colormap."""
    import cv2

    image = image_uint8.detach().cpu().numpy() if isinstance(image_uint8, Tensor) else np.asarray(image_uint8)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"overlay expects an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    saliency = map01 if isinstance(map01, Tensor) else torch.from_numpy(np.asarray(map01, dtype=np.float32))
    saliency = upsample_maps(saliency.detach().float().cpu(), image.shape[:2]).clamp(0, 1).numpy()
    heat = cv2.applyColorMap(np.uint8(np.round(255 * saliency)), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    return np.uint8(np.clip((1 - alpha) * image.astype(np.float32) + alpha * heat, 0, 255).round())


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    parameter = next(model.parameters())
    return parameter.device, parameter.dtype


@contextlib.contextmanager
def _side_effect_free(model: nn.Module):
    """Eval mode during the call; afterwards every module's mode and every parameter's .grad as before."""
    modes = [(module, module.training) for module in model.modules()]
    grads = [(parameter, parameter.grad) for parameter in model.parameters()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
        for parameter, grad in grads:
            parameter.grad = grad


# --------------------------------------------------------------------------------------------------
# the interface


class SaliencyMethod:
    """Base class: subclasses implement ``compute`` (unnormalised maps); ``__call__`` checks and normalises."""

    name: str = "saliency"
    engine: str = "none"
    resolution: str = "feature map"

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def compute(self, images: Tensor, targets: Optional[Tensor]) -> Tensor:
        raise NotImplementedError

    def __call__(self, images: Tensor, targets: Targets = None) -> Tensor:
        """Maps (B, h, w) in [0, 1] for ``images`` (B, 3, H, W) and ``targets`` (B,) (``None``: top-1)."""
        if images.dim() != 4:
            raise ValueError(f"saliency expects images (B, C, H, W), got shape {tuple(images.shape)}")
        device, dtype = _model_device_dtype(self.model)
        images = images.to(device=device, dtype=dtype)
        if targets is not None:
            targets = torch.as_tensor(targets, device=device).long().reshape(-1)
            if targets.numel() != images.shape[0]:
                raise ValueError(f"one target per image: {images.shape[0]} images, {targets.numel()} targets")
            classes = getattr(self.model, "num_classes", None)
            if classes is not None and targets.numel() and (targets.min() < 0 or targets.max() >= classes):
                raise ValueError(f"targets must be class indices in [0, {classes}), got {targets.tolist()}")
        with _side_effect_free(self.model):
            maps = self.compute(images, targets)
        return normalize_maps(maps.to(device))

    def describe(self) -> dict[str, str]:
        """What a result file should record about the maps (protocol card)."""
        return {"method": self.name, "engine": self.engine, "resolution": self.resolution,
                "normalisation": "ReLU, then per-image min-max to [0, 1]"}

    def close(self) -> None:
        """Releases held resources. Hooks never outlive a call, so this only drops cached state."""

    def __enter__(self) -> "SaliencyMethod":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, engine={self.engine!r})"


# --------------------------------------------------------------------------------------------------
# pytorch-grad-cam


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


# --------------------------------------------------------------------------------------------------
# fast gradient family


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
        variant = _ALIASES.get(variant.lower(), variant.lower())
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
        if self.uses_fast_path is False:
            return self._fallback().compute(images, targets)
        captured: list[Tensor] = []
        handle = self.target_layer.register_forward_hook(lambda module, args, output: captured.append(output))
        try:
            with torch.no_grad():
                feature_maps = self.model.forward_feature_maps(images)
        finally:
            handle.remove()
        if self.uses_fast_path is None:
            self.uses_fast_path = bool(captured) and captured[-1] is feature_maps[-1]
            if not self.uses_fast_path:
                return self._fallback().compute(images, targets)
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


# --------------------------------------------------------------------------------------------------
# the stream's attention, random baseline


ATTENTION_REDUCTIONS = ("last", "mean", "product")


class AttentionMaps(SaliencyMethod):
    """The CA stream's own attention, from one forward (no gradients); class-agnostic (targets ignored).

    Heads are averaged. ``last``: the last block's map, on its grid. ``mean`` / ``product``: every block's
    map is brought to the finest block grid (the first block's, for CNNs) by bilinear upsampling
    (align_corners=False) and the maps are averaged / multiplied there. Each block's map is first scaled
    by its number of positions (uniform attention = 1 everywhere), so that blocks of different sizes weigh
    the same in the mean; the product is unaffected by that scaling.
    """

    engine = "attention"

    def __init__(self, model: nn.Module, reduction: str = "last") -> None:
        super().__init__(model)
        if getattr(model, "stream", None) is None:
            raise ValueError(f"attention maps need --pool ca or ca_last "
                             f"(this model pools with {getattr(model, 'pool', 'gap')})")
        if reduction not in ATTENTION_REDUCTIONS:
            raise ValueError(f"unknown attention reduction '{reduction}': expected one of "
                             f"{', '.join(ATTENTION_REDUCTIONS)}")
        self.reduction = reduction
        self.name = "attention" if reduction == "last" else f"attention_{reduction}"
        self.resolution = "last CA block's grid" if reduction == "last" else "finest CA block's grid"

    def compute(self, images: Tensor, targets: Optional[Tensor]) -> Tensor:
        with torch.no_grad():
            _, attentions = self.model.forward_with_attention(images)
        return reduce_attention(attentions, self.reduction)


def reduce_attention(attentions: Sequence[Tensor], reduction: str = "last") -> Tensor:
    """Combines per-block attention (B, heads, H_k, W_k) into maps (B, h, w); see :class:`AttentionMaps`."""
    maps = [a.float().mean(dim=1) for a in attentions]
    if reduction == "last":
        return maps[-1]
    size = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])
    densities = [upsample_maps(m * (m.shape[-2] * m.shape[-1]), tuple(size)) for m in maps]
    stacked = torch.stack(densities)
    if reduction == "mean":
        return stacked.mean(dim=0)
    if reduction == "product":
        # In float64 and scaled to max 1 there: a product of peaked densities (up to H*W each) could
        # overflow float32 on large grids; the scale is irrelevant after min-max normalisation.
        product = stacked.double().prod(dim=0)
        peak = product.flatten(1).max(dim=1).values.clamp_min(torch.finfo(torch.float64).tiny)
        return (product / peak[:, None, None]).float()
    raise ValueError(f"unknown attention reduction '{reduction}'")


class RandomMap(SaliencyMethod):
    """Uniform random maps at the last feature map's resolution: the sanity baseline.

    Draws come from a CPU generator seeded once, so a sequence of calls is reproducible per seed and
    identical on every device. The grid size is probed once per input size (one 1-image forward).
    """

    engine = "random"
    resolution = "last feature map"
    name = "random"

    def __init__(self, model: nn.Module, seed: int = 0) -> None:
        super().__init__(model)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self._grid: dict[tuple[int, int], tuple[int, int]] = {}

    def compute(self, images: Tensor, targets: Optional[Tensor]) -> Tensor:
        key = tuple(images.shape[-2:])
        if key not in self._grid:
            with torch.no_grad():
                self._grid[key] = tuple(self.model.forward_features(images[:1]).shape[-2:])
        return torch.rand((images.shape[0], *self._grid[key]), generator=self.generator)


# --------------------------------------------------------------------------------------------------
# registry


_PACKAGE_NAMES: dict[str, str] = {  # registry name -> pytorch_grad_cam class
    **FAST_VARIANTS,
    "scorecam": "ScoreCAM", "ablationcam": "AblationCAM", "eigencam": "EigenCAM", "eigengradcam": "EigenGradCAM",
    "kpca_cam": "KPCA_CAM", "fem": "FEM", "shapleycam": "ShapleyCAM", "finercam": "FinerCAM",
    "randomcam": "RandomCAM", "fullgrad": "FullGrad", "segeigencam": "SegEigenCAM", "refinecam": "RefineCAM",
    "sess": "SESS",
}
_OWN_METHODS: dict[str, Callable[..., SaliencyMethod]] = {
    "attention": lambda model, **kw: AttentionMaps(model, "last", **kw),
    "attention_mean": lambda model, **kw: AttentionMaps(model, "mean", **kw),
    "attention_product": lambda model, **kw: AttentionMaps(model, "product", **kw),
    "random": lambda model, **kw: RandomMap(model, **kw),
}
_ALIASES = {
    "gradcampp": "gradcam++", "gradcamplusplus": "gradcam++", "grad-cam": "gradcam", "grad_cam": "gradcam",
    "gradcamelementwise": "gradcam_elementwise", "kpcacam": "kpca_cam", "attention_last": "attention",
    "raw_attention": "attention",
}
ENGINES = ("auto", "fast", "package")


def available_methods() -> list[str]:
    """Registry names accepted by :func:`create_saliency` (aliases left out)."""
    return list(_PACKAGE_NAMES) + list(_OWN_METHODS)


def canonical_name(name: str) -> str:
    """A registry name for ``name`` (alias, any case, or a pytorch_grad_cam class name); ValueError if none."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key in _PACKAGE_NAMES or key in _OWN_METHODS:
        return key
    by_class = {cls.lower(): method for method, cls in _PACKAGE_NAMES.items()}
    if key in by_class:
        return by_class[key]
    raise ValueError(f"unknown saliency method '{name}': known are {', '.join(available_methods())}")


def create_saliency(name: str, model: nn.Module, engine: str = "auto", **kwargs: Any) -> SaliencyMethod:
    """The saliency method ``name`` for ``model``.

    Gradient-family names use :class:`FastGradientCAM` unless ``engine='package'``; the other CAM names run
    through pytorch-grad-cam; ``attention*`` and ``random`` are this project's own. ``kwargs`` go to the
    method's class (e.g. ``batch_size`` for ScoreCAM, ``seed`` for random, ``target_layer(s)``).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown saliency engine '{engine}': expected one of {', '.join(ENGINES)}")
    key = canonical_name(name)
    if key in _OWN_METHODS:
        if engine == "package":
            raise ValueError(f"'{key}' is this project's own method: pytorch-grad-cam has no equivalent")
        method = _OWN_METHODS[key](model, **kwargs)
    elif key in FAST_VARIANTS and engine != "package":
        if "target_layers" in kwargs:  # the package's spelling: one layer is the fast path's only option
            layers = list(kwargs.pop("target_layers"))
            if len(layers) != 1:
                raise ValueError("the fast path takes one target layer; use engine='package' for several")
            kwargs["target_layer"] = layers[0]
        method = FastGradientCAM(model, key, **kwargs)
    elif engine == "fast":
        raise ValueError(f"no fast path for '{key}': fast variants are {', '.join(FAST_VARIANTS)}")
    else:
        if "target_layer" in kwargs:
            kwargs["target_layers"] = [kwargs.pop("target_layer")]
        method = GradCamPackageMethod(model, _PACKAGE_NAMES[key], **kwargs)
    method.name = key
    return method


__all__ = [
    "ATTENTION_REDUCTIONS", "AttentionMaps", "CAVEATS", "FAST_VARIANTS", "FastGradientCAM", "GradCamPackageMethod",
    "PACKAGE_HELPERS", "RandomMap", "SaliencyMethod", "UNSUPPORTED_REASONS", "available_methods", "canonical_name",
    "create_saliency", "gradient_cam", "normalize_maps", "overlay", "package_cam_classes", "reduce_attention",
    "upsample_maps",
]
