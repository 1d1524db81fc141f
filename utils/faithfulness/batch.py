"""Every registered faithfulness metric of one batch, per image: what objrecon_imagenet.py computes."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Mapping, Optional, Sequence, Union

import torch
from torch import nn

from utils.runtime.forward import ForwardSettings

from .confidence import average_drop_increase_gain
from .inputs import ArrayLike, Targets, as_targets, target_scores
from .metrics import METRICS, Metric, PerturbationMetric
from .protocol import EvalProtocol, get_protocol


@dataclass(frozen=True, eq=False)
class MetricBatch:
    """One batch as every metric sees it (:meth:`~utils.faithfulness.metrics.Metric.compute`); the work that
    several metrics share runs once, on first use.

    Args:
        model: the classifier (eval mode)
        images: (N, C, H, W) normalised images on the forward device
        saliency: (N, h, w) or (N, 1, h, w) maps as given (each metric prepares them at the size it needs)
        targets: (N,) explained classes, on the forward device
        mean: the normalisation's mean of ``images``
        std: the normalisation's std of ``images``
        protocol: the evaluation protocol
        forward: how the metric forwards run
        clean_logits: (N, classes) logits of the clean images
        masks: (N, H', W') bool object masks of the explained classes, None where there are none
    """

    model: nn.Module
    images: torch.Tensor
    saliency: ArrayLike
    targets: torch.Tensor
    mean: Sequence[float]
    std: Sequence[float]
    protocol: EvalProtocol
    forward: ForwardSettings
    clean_logits: torch.Tensor
    masks: Optional[torch.Tensor] = None

    @property
    def num_images(self) -> int:
        return self.images.shape[0]

    @cached_property
    def clean_scores(self) -> torch.Tensor:
        """(N,) ``p``: the target's class score on the clean image (``protocol.class_score``), CPU."""
        return target_scores(self.clean_logits, self.targets, self.protocol.class_score).cpu()

    @cached_property
    def confidence(self) -> dict[str, torch.Tensor]:
        """``p``, ``o``, ``ad``, ``ai``, ``ag`` of :func:`~utils.faithfulness.confidence.average_drop_increase_gain`:
        one forward of the masked images, shared by AD, AI, AG and the ``p`` / ``o`` columns."""
        return average_drop_increase_gain(self.model, self.images, self.saliency, self.targets, self.mean, self.std,
                                          self.forward, masking_space=self.protocol.masking_space,
                                          class_score=self.protocol.class_score, clean_scores=self.clean_scores)


def evaluate_batch(model: nn.Module, images: torch.Tensor, saliency: ArrayLike, targets: Optional[Targets],
                   mean: Sequence[float], std: Sequence[float], protocol: Union[str, EvalProtocol] = "reference",
                   forward: ForwardSettings = ForwardSettings(), *, masks: Optional[torch.Tensor] = None,
                   perturbation: bool = True) -> dict[str, torch.Tensor]:
    """Every registered metric of one batch, per image (CPU tensors), under the keys of
    :data:`~utils.faithfulness.metrics.METRICS` and the arrays they keep (the insertion / deletion curves
    ``insertion_curve``, ``deletion_curve``, ...), plus ``target``, ``prediction`` (the clean image's top-1 class),
    ``p`` and ``o``.

    ``perturbation`` adds positive / negative perturbation ((N, fractions) bool); ``masks`` (N, H, W) the metrics
    that need masks, e.g. the pointing games (within ``protocol.pointing_tolerance`` pixels). Scores are
    ``protocol.class_score``: softmax, or the target's sigmoid for multi-label models. With
    ``protocol.class_source == 'pred'`` the clean image's predicted class is used and ``targets`` is ignored (may
    be None).
    """
    proto = get_protocol(protocol)
    device = forward.device_for(model)
    images = images.to(device)
    clean = forward.logits(model, images)
    if proto.class_source == "pred":
        targets = clean.argmax(-1)
    elif targets is None:
        raise ValueError("class_source 'gt' needs targets")
    targets = as_targets(targets, images.shape[0], device)
    batch = MetricBatch(model, images, saliency, targets, mean, std, proto, forward, clean, masks)
    out = {"target": targets.cpu(), "prediction": clean.argmax(-1).cpu(), "p": batch.confidence["p"],
           "o": batch.confidence["o"]}
    for declared in METRICS:
        if (declared.needs_masks and masks is None) or (not perturbation and isinstance(declared, PerturbationMetric)):
            continue
        out.update(_checked(declared, declared.compute(batch), batch.num_images))
    return out


def _checked(declared: Metric, outputs: Mapping[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """A metric's outputs on the CPU, with one line naming the metric when one is missing or not per image."""
    for name in (declared.key, *declared.keeps):
        values = outputs.get(name)
        if not isinstance(values, torch.Tensor) or values.ndim == 0 or values.shape[0] != n:
            found = "nothing" if values is None else f"shape {tuple(getattr(values, 'shape', ()))}"
            raise ValueError(f"metric '{declared.key}' returned {found} under '{name}'; expected a tensor with one "
                             f"row per image ({n})")
    return {name: values.cpu() for name, values in outputs.items()}


def predict(model: nn.Module, images: torch.Tensor, forward: ForwardSettings = ForwardSettings()) -> torch.Tensor:
    """(N,) top-1 classes of the clean images (CPU), computed as :func:`evaluate_batch` does for class_source
    'pred': callers that need the predicted class before evaluating (e.g. to explain it) get the same one."""
    return forward.logits(model, images).argmax(-1).cpu()
