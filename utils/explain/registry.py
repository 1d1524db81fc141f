"""Saliency methods by name: every CAM of pytorch-grad-cam (through the package, or this project's fast path for
the gradient family, Score-CAM, Ablation-CAM and FullGrad), the CA stream's attention and a random baseline.
``create_saliency(name, model)`` is the entry point; ``available_methods()`` lists the names."""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch.nn as nn

from utils.runtime.forward import ForwardSettings

from .attention import AttentionMaps
from .base import SaliencyMethod
from .baselines import RandomMap
from .fullgrad import FastFullGrad
from .gradient import FAST_VARIANTS, FastGradientCAM
from .package import GradCamPackageMethod
from .perchannel import PER_CHANNEL_VARIANTS, PerChannelCAM

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
# names with a fast path of this project (the default engine for them): registry name -> the package class
FAST_NAMES: dict[str, str] = {**FAST_VARIANTS, **PER_CHANNEL_VARIANTS, "fullgrad": "FullGrad"}


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


def create_saliency(name: str, model: nn.Module, engine: str = "auto", forward: Optional[ForwardSettings] = None,
                    **kwargs: Any) -> SaliencyMethod:
    """The saliency method ``name`` for ``model``.

    The names of :data:`FAST_NAMES` use this project's fast path (:class:`FastGradientCAM`, :class:`PerChannelCAM`,
    :class:`FastFullGrad`) unless ``engine='package'``; the other CAM names run through pytorch-grad-cam;
    ``attention*`` and ``random`` are this project's own. ``forward``: how the fast paths run their forwards
    (chunk, autocast, channels_last; the package ignores it). ``kwargs`` go to the method's class (e.g.
    ``batch_size`` for Score-CAM / Ablation-CAM, ``seed`` for random, ``target_layer(s)``).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown saliency engine '{engine}': expected one of {', '.join(ENGINES)}")
    key = canonical_name(name)
    if key in _OWN_METHODS:
        if engine == "package":
            raise ValueError(f"'{key}' is this project's own method: pytorch-grad-cam has no equivalent")
        method = _OWN_METHODS[key](model, **kwargs)
    elif key in FAST_NAMES and engine != "package":
        method = _fast_method(key, model, forward, kwargs)
    elif engine == "fast":
        raise ValueError(f"no fast path for '{key}': fast paths exist for {', '.join(FAST_NAMES)}")
    else:
        if "target_layer" in kwargs:
            kwargs["target_layers"] = [kwargs.pop("target_layer")]
        method = GradCamPackageMethod(model, _PACKAGE_NAMES[key], **kwargs)
    method.name = key
    return method


def _fast_method(key: str, model: nn.Module, forward: Optional[ForwardSettings], kwargs: dict) -> SaliencyMethod:
    if "target_layers" in kwargs:  # the package's spelling: one layer is the fast paths' only option
        layers = list(kwargs.pop("target_layers"))
        if len(layers) != 1:
            raise ValueError("the fast path takes one target layer; use engine='package' for several")
        kwargs["target_layer"] = layers[0]
    if key in FAST_VARIANTS:
        return FastGradientCAM(model, key, forward=forward, **kwargs)
    if key in PER_CHANNEL_VARIANTS:
        return PerChannelCAM(model, key, forward=forward, **kwargs)
    if "target_layer" in kwargs:
        raise ValueError("FullGrad has no target layer: it sums the bias gradients of every layer")
    return FastFullGrad(model, forward=forward, **kwargs)

