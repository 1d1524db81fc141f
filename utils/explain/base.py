"""The saliency interface: one small base class, :class:`SaliencyMethod`, and the map conventions every method
shares.

A method is called as ``method(images, targets) -> maps``: ``images`` (B, 3, H, W), ``targets`` (B,) class
indices (``None``: the model's top-1), ``maps`` (B, h, w) float32 on the model's device at the method's *native*
resolution (the grid on which it forms the map, see ``resolution``), ReLU'd and min-max normalised per image to
[0, 1] (a constant map becomes all zeros, never NaN). Upsampling is the caller's business (:func:`upsample_maps`),
so that evaluation decides it once, the same way for every method.

In an evaluation a method is called as ``method.explain_batch(images, targets, context)`` instead: the
:class:`BatchContext` says which dataset images the batch holds, the run's seed, and what the batch's
classification forward already computed. The base class runs the method; subclasses override that one hook to
reuse the forward (the fast gradient CAMs its feature maps, the attention maps its attention; ``reuses`` names
what they read) or to draw per image (the random baseline), as pytorch-grad-cam's subclasses override one hook of
``BaseCAM``.

Every call runs the model in eval mode and leaves it as it was: training flags of every module, the parameters'
``.grad`` and the module hooks are restored, also when the call raises. Hooks live only for the duration of one
call, so a method object can stay alive across thousands of batches without capturing anything in between.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

Targets = Optional[Union[Tensor, Sequence[int]]]
REUSABLE = ("feature_maps", "attentions")  # the parts of a classification forward a method may reuse


@dataclass(frozen=True)
class BatchContext:
    """What an evaluation knows of a batch besides its images and targets.

    ``indices``: the dataset index of each image (methods that draw at random seed each image from
    (``seed``, index), so that their maps do not depend on batching or sharding). ``feature_maps``: the batch's
    ``model.forward_feature_maps(images)``; ``attentions``: the CA stream's attention from ``model.forward_head``;
    None where the evaluation did not keep them (a method then runs its own forward).
    """

    indices: Optional[Sequence[int]] = None
    seed: int = 0
    feature_maps: Optional[Sequence[Tensor]] = None
    attentions: Optional[Sequence[Tensor]] = None


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


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    parameter = next(model.parameters())
    return parameter.device, parameter.dtype


def produces_last_feature_map(model: nn.Module, layer: nn.Module, image: Tensor) -> bool:
    """Whether ``layer``'s output is the last feature map of ``model`` (what its pooling head reads), found with one
    forward of ``image`` (1, 3, H, W): the fast CAMs then need only the head, else the model runs whole."""
    captured: list[Tensor] = []
    handle = layer.register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        with torch.no_grad(), side_effect_free(model):
            final = model.forward_features(image.to(model_device_dtype(model)[0]))
    finally:
        handle.remove()
    return bool(captured) and captured[-1] is final


@contextlib.contextmanager
def side_effect_free(model: nn.Module):
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


class SaliencyMethod:
    """Base class: subclasses implement ``compute`` (unnormalised maps); ``__call__`` checks and normalises."""

    name: str = "saliency"
    engine: str = "none"
    resolution: str = "feature map"
    reuses: tuple[str, ...] = ()  # the parts of the classification forward (REUSABLE) explain_batch reads

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def compute(self, images: Tensor, targets: Optional[Tensor]) -> Tensor:
        raise NotImplementedError

    def __call__(self, images: Tensor, targets: Targets = None) -> Tensor:
        """Maps (B, h, w) in [0, 1] for ``images`` (B, 3, H, W) and ``targets`` (B,) (``None``: top-1)."""
        images, targets = self.checked_inputs(images, targets)
        with side_effect_free(self.model):
            maps = self.compute(images, targets)
        return normalize_maps(maps.to(images.device))

    def explain_batch(self, images: Tensor, targets: Targets = None, context: Optional[BatchContext] = None
                      ) -> Tensor:
        """The maps of an evaluation batch, as ``self(images, targets)`` gives them (the default); ``context`` may
        spare the method its own forward (see ``reuses``)."""
        return self(images, targets)

    def checked_inputs(self, images: Tensor, targets: Targets) -> tuple[Tensor, Optional[Tensor]]:
        """``images`` on the model's device and dtype, ``targets`` as class indices (one per image) or None."""
        if images.dim() != 4:
            raise ValueError(f"saliency expects images (B, C, H, W), got shape {tuple(images.shape)}")
        device, dtype = model_device_dtype(self.model)
        images = images.to(device=device, dtype=dtype)
        if targets is not None:
            targets = torch.as_tensor(targets, device=device).long().reshape(-1)
            if targets.numel() != images.shape[0]:
                raise ValueError(f"one target per image: {images.shape[0]} images, {targets.numel()} targets")
            classes = getattr(self.model, "num_classes", None)
            if classes is not None and targets.numel() and (targets.min() < 0 or targets.max() >= classes):
                raise ValueError(f"targets must be class indices in [0, {classes}), got {targets.tolist()}")
        return images, targets

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
