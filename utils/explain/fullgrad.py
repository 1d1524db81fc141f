"""FullGrad (Srinivas & Fleuret 2019) with the package's post-processing vectorised on the device."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor

from utils.runtime.forward import ForwardSettings

from .base import SaliencyMethod, upsample_maps

FULLGRAD_EPS = 1e-7  # utils/image.py's scale_cam_image: x -= min; x /= (eps + max)


def bias_layers(model: nn.Module) -> list[nn.Module]:
    """The layers whose bias gradients FullGrad sums, as the package picks them: modules of exactly the type
    nn.Conv2d or nn.BatchNorm2d that have a bias (subclasses such as timm's BatchNormAct2d are left out)."""
    return [m for m in model.modules() if type(m) in (nn.Conv2d, nn.BatchNorm2d) and m.bias is not None]


def effective_bias(layer: nn.Module) -> Tensor:
    """The bias a layer adds to its output: a BatchNorm's shift after folding in its running statistics."""
    if isinstance(layer, nn.BatchNorm2d):
        return layer.bias - layer.running_mean * layer.weight / torch.sqrt(layer.running_var + layer.eps)
    return layer.bias


def scale_channels(values: Tensor) -> Tensor:
    """(B, C, h, w) min-max scaled per image and channel, with the package's epsilon (scale_cam_image)."""
    values = values - values.amin(dim=(2, 3), keepdim=True)
    return values / (FULLGRAD_EPS + values.amax(dim=(2, 3), keepdim=True))


class FastFullGrad(SaliencyMethod):
    """FullGrad as ``pytorch_grad_cam.FullGrad`` computes it, at the input resolution.

    The map sums |input gradient x input| and, for every bias layer (:func:`bias_layers`), |bias x gradient of the
    layer's output|, each scaled to [0, 1] per image and channel and upsampled bilinearly to the input size. The
    package scales and resizes every channel of every layer on the host (one cv2 call each, tens of thousands per
    image for a ResNet-50); here each layer is scaled on the device, summed over its channels and upsampled once
    (the resize is linear, so this is the same sum), inside the backward pass, so no gradient is kept. One forward
    and one backward to the input; ``forward`` gives the autocast dtype and layout of that pass.
    """

    engine = "fast"
    resolution = "input"

    def __init__(self, model: nn.Module, forward: Optional[ForwardSettings] = None) -> None:
        super().__init__(model)
        self.name = "fullgrad"
        self.forward = ForwardSettings() if forward is None else forward

    def compute(self, images: Tensor, targets: Optional[Tensor]) -> Tensor:
        size = tuple(images.shape[-2:])
        total = [torch.zeros(images.shape[0], *size, device=images.device)]

        def add_layer(bias: Tensor, grad: Tensor) -> None:
            share = scale_channels((bias[None, :, None, None] * grad.float()).abs()).sum(dim=1)
            total[0] = total[0] + upsample_maps(share, size)

        def on_output(module: nn.Module, args: tuple, output: Tensor) -> None:
            bias = effective_bias(module).detach().float()
            output.register_hook(lambda grad: add_layer(bias, grad))

        inputs = images.detach().requires_grad_()
        handles = [layer.register_forward_hook(on_output) for layer in bias_layers(self.model)]
        try:
            with torch.enable_grad():
                with self.forward.autocast(images.device):
                    logits = self.model(self.forward.prepare(inputs, images.device)).float()
                if targets is None:
                    targets = logits.argmax(dim=1)
                (input_grad,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), inputs)
        finally:
            for handle in handles:
                handle.remove()
        return total[0] + scale_channels((input_grad.float() * images.float()).abs()).sum(dim=1)
