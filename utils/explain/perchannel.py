"""Score-CAM and Ablation-CAM with their per-channel forwards batched on the device.

Both weigh each channel of the target layer by a forward of the model with that channel singled out: Score-CAM
masks the image with the channel's upsampled, min-max normalised map (Wang et al. 2020), Ablation-CAM ablates the
channel in the target layer's output (Desai & Ramaswamy 2020). The formulas are pytorch-grad-cam 1.5.7's
(``score_cam.py``, ``ablation_cam.py``, ``ablation_layer.py``); what changes is how the forwards run. Every
(image, channel) pair of the batch is one row; rows are built on the device a chunk at a time and forwarded through
:class:`~utils.runtime.forward.ForwardSettings` (chunk with its out-of-memory split, autocast, channels_last), and
the scores stay on the device (the package moves each score to the host and materialises channels x image for a
whole image before its first forward).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from utils.runtime.forward import ForwardSettings

from .base import SaliencyMethod, produces_last_feature_map

PER_CHANNEL_VARIANTS: dict[str, str] = {"scorecam": "ScoreCAM", "ablationcam": "AblationCAM"}
SCORECAM_EPS = 1e-8  # score_cam.py's epsilon in the per-channel min-max of the upsampled maps
ABLATION_OFFSET = 1e7  # ablation_layer.py's ABLATION_VALUE, used where a channel's minimum is not 0


class PerChannelCAM(SaliencyMethod):
    """Score-CAM (``variant='scorecam'``) or Ablation-CAM (``'ablationcam'``), any batch of images at once.

    ``forward``: how the per-channel forwards run: ``chunk`` rows (image, channel) per forward, ``amp`` for
    Score-CAM's masked forwards (Ablation-CAM runs in float32: the share of one channel in a logit is below bf16's
    resolution), ``channels_last``. Default: float32, chunks of ``batch_size``.

    Score-CAM: a channel whose map is all zero masks its image to zeros, so the zero image is forwarded once per
    call instead of once per such channel. Ablation-CAM: when the target layer produces the last feature map (the
    default target), only the pooling head runs on the ablated maps
    (:meth:`~models.classifier.CAStreamClassifier.head_of_last_map`), else the whole model runs with the target
    layer's output replaced; an all-zero channel ablated to zero changes nothing, so it gets no forward.

    ``batch_size``: the inner batch of the package's AblationCAM (the package adapter's default, 64). Where an
    image's activations have a minimum ``m`` other than 0, the package writes ``m - k * 1e7`` into the k-th
    channel of each of its batches (its ablation layer lowers the running minimum of the batch it edits); this is
    reproduced, so that the maps equal the package's.
    """

    engine = "fast"

    def __init__(self, model: nn.Module, variant: str = "scorecam", target_layer: Optional[nn.Module] = None,
                 forward: Optional[ForwardSettings] = None, batch_size: int = 64) -> None:
        super().__init__(model)
        if variant not in PER_CHANNEL_VARIANTS:
            raise ValueError(f"no per-channel fast path for '{variant}': expected one of "
                             f"{', '.join(PER_CHANNEL_VARIANTS)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.variant = variant
        self.name = variant
        self.target_layer = model.cam_target_layer if target_layer is None else target_layer
        self.forward = ForwardSettings(chunk=batch_size) if forward is None else forward
        self.batch_size = batch_size
        self.resolution = "target layer's feature map"
        self.head_only: Optional[bool] = None  # Ablation-CAM: found out on the first call

    def describe(self) -> dict[str, str]:
        precision = self.forward.amp if self.variant == "scorecam" else "none"
        return {**super().describe(), "amp": precision, "chunk": str(self.forward.chunk)}

    def compute(self, images: Tensor, targets: Optional[Tensor]) -> Tensor:
        activations, logits, feature_maps = self._activations(images)
        if targets is None:
            targets = logits.argmax(dim=1)
        if self.variant == "scorecam":
            weights = self._scorecam_scores(images, activations, targets).softmax(dim=1)
        else:
            weights = self._ablation_weights(images, activations, logits, feature_maps, targets)
        return (weights[:, :, None, None] * activations).sum(dim=1)

    def _activations(self, images: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        """The target layer's output (float32), the logits and the feature maps of one plain forward."""
        captured: list[Tensor] = []
        handle = self.target_layer.register_forward_hook(lambda module, args, output: captured.append(output))
        try:
            with torch.no_grad():
                feature_maps = self.model.forward_feature_maps(images)
                logits, _ = self.model.forward_head(feature_maps)
        finally:
            handle.remove()
        if not captured:
            raise ValueError(f"{type(self.target_layer).__name__}, the target layer, did not run in the forward")
        return captured[-1].float(), logits.float(), feature_maps

    def _scorecam_scores(self, images: Tensor, activations: Tensor, targets: Tensor) -> Tensor:
        """The target logit of the image masked by each channel's map (B, C); the weights are their softmax."""
        batch, channels = activations.shape[:2]
        device, size = images.device, images.shape[-2:]
        live = activations.flatten(2).ne(0).any(dim=2).flatten()
        rows = live.nonzero().squeeze(1)  # the one host sync of the call: how many forwards there are
        model, settings = self.model, self.forward

        def masked_scores(start: int, stop: int) -> Tensor:
            owner, channel = rows[start:stop] // channels, rows[start:stop] % channels
            upsampled = F.interpolate(activations[owner, channel][:, None], size=size, mode="bilinear",
                                      align_corners=True)
            low = upsampled.amin(dim=(2, 3), keepdim=True)
            high = upsampled.amax(dim=(2, 3), keepdim=True)
            masks = (upsampled - low) / (high - low + SCORECAM_EPS)
            logits = model(settings.prepare(images[owner] * masks, device))
            return logits.gather(1, targets[owner][:, None])[:, 0]

        zero_image = settings.chunked(1, lambda start, stop: model(settings.prepare(torch.zeros_like(images[:1]),
                                                                                    device)), device)[0]
        scores = zero_image[targets][:, None].repeat(1, channels)
        scores.view(-1)[rows] = settings.chunked(rows.numel(), masked_scores, device)
        return scores

    def _ablation_weights(self, images: Tensor, activations: Tensor, logits: Tensor, feature_maps: Sequence[Tensor],
                          targets: Tensor) -> Tensor:
        """(original - ablated) / original target logit, per channel."""
        batch, channels = activations.shape[:2]
        device = images.device
        original = logits.gather(1, targets[:, None])[:, 0]
        minimum = activations.flatten(1).amin(dim=1, keepdim=True)
        position = torch.arange(channels, device=device) % self.batch_size + 1
        values = torch.where(minimum == 0, torch.zeros_like(minimum), minimum - position * ABLATION_OFFSET)
        needed = (activations.flatten(2).ne(0).any(dim=2) | values.ne(0)).flatten()
        rows = needed.nonzero().squeeze(1)  # the one host sync of the call: how many forwards there are
        if self.head_only is None:
            self.head_only = produces_last_feature_map(self.model, self.target_layer, images[:1])
        with torch.no_grad():
            head = self.model.head_of_last_map(feature_maps) if self.head_only else None

        def ablated_scores(start: int, stop: int) -> Tensor:
            index = rows[start:stop]
            owner, channel = index // channels, index % channels
            ablated = activations[owner]
            ablated[torch.arange(len(index), device=device), channel] = values.flatten()[index][:, None, None]
            logits = head(ablated, owner) if head is not None else self._forward_replacing(images[owner], ablated)
            return logits.gather(1, targets[owner][:, None])[:, 0]

        scores = original[:, None].repeat(1, channels)
        scores.view(-1)[rows] = replace(self.forward, amp="none").chunked(rows.numel(), ablated_scores, device)
        return (original[:, None] - scores) / original[:, None]

    def _forward_replacing(self, images: Tensor, output: Tensor) -> Tensor:
        """Logits of the model whose target layer outputs ``output`` (as the package's ablation layer does)."""
        handle = self.target_layer.register_forward_hook(lambda module, args, original: output.to(original.dtype))
        try:
            return self.model(self.forward.prepare(images, images.device))
        finally:
            handle.remove()
