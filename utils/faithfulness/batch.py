"""Every faithfulness metric of one batch, per image: what objrecon_imagenet.py computes."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn

from utils.runtime.forward import ForwardSettings

from .causal import auc, causal_metric
from .confidence import average_drop_increase_gain
from .inputs import ArrayLike, Targets, as_targets, target_scores
from .localization import energy_pointing_game, pointing_game
from .perturbation import perturbation_curve
from .protocol import EvalProtocol, get_protocol


def evaluate_batch(model: nn.Module, images: torch.Tensor, saliency: ArrayLike, targets: Optional[Targets],
                   mean: Sequence[float], std: Sequence[float], protocol: Union[str, EvalProtocol] = "reference",
                   forward: ForwardSettings = ForwardSettings(), *, masks: Optional[torch.Tensor] = None,
                   perturbation: bool = True) -> dict[str, torch.Tensor]:
    """All faithfulness metrics of one batch, per image (CPU tensors), under the keys of
    :data:`~utils.faithfulness.metrics.METRICS` plus ``target``, ``prediction`` (the clean image's top-1 class),
    ``p``, ``o`` and the insertion / deletion curves (``insertion_curve``, ``deletion_curve``).

    ``perturbation`` adds positive / negative perturbation ((N, fractions) bool); ``masks`` (N, H, W) the pointing
    games (within ``protocol.pointing_tolerance`` pixels). Scores are ``protocol.class_score``: softmax, or the
    target's sigmoid for multi-label models. With ``protocol.class_source == 'pred'`` the clean image's predicted
    class is used and ``targets`` is ignored (may be None).
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
    out = {"target": targets.cpu(), "prediction": clean.argmax(-1).cpu(),
           **average_drop_increase_gain(model, images, saliency, targets, mean, std, forward,
                                        masking_space=proto.masking_space, class_score=proto.class_score,
                                        clean_scores=target_scores(clean, targets, proto.class_score).cpu())}
    for mode in ("insertion", "deletion"):
        curve = causal_metric(model, images, saliency, targets, mode, forward=forward, protocol=proto, mean=mean,
                              std=std)
        out[f"{mode}_curve"], out[mode] = curve, auc(curve)
    if perturbation:
        for mode in ("positive", "negative"):
            out[f"{mode}_perturbation"] = perturbation_curve(model, images, saliency, targets, mean, std, mode,
                                                             proto.perturbation_fractions, forward,
                                                             proto.class_score)
    if masks is not None:
        out["pointing_game"] = pointing_game(saliency, masks, proto.pointing_tolerance)
        out["energy_pointing_game"] = energy_pointing_game(saliency, masks)
    return out


def predict(model: nn.Module, images: torch.Tensor, forward: ForwardSettings = ForwardSettings()) -> torch.Tensor:
    """(N,) top-1 classes of the clean images (CPU), computed as :func:`evaluate_batch` does for class_source
    'pred': callers that need the predicted class before evaluating (e.g. to explain it) get the same one."""
    return forward.logits(model, images).argmax(-1).cpu()
