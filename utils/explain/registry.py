"""Saliency methods by name: every CAM of pytorch-grad-cam (through the package, or this project's fast path for
the gradient family, Score-CAM, Ablation-CAM and FullGrad), the CA stream's attention, a random baseline, and
whatever :func:`register_method` adds. ``create_saliency(name, model)`` is the entry point;
``available_methods()`` lists the names.

The registry owns each method's capabilities (:class:`MethodSpec`): which engines it has (this project's fast
path, pytorch-grad-cam's class, or this project's own method with no package equivalent) and which parts of the
classification forward its maps reuse (``reuses``, set on every method it creates).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Optional, Sequence

import torch.nn as nn

from utils.runtime.forward import ForwardSettings

from .attention import AttentionMaps
from .base import REUSABLE, SaliencyMethod
from .baselines import RandomMap
from .fullgrad import FastFullGrad
from .gradient import FAST_VARIANTS, FastGradientCAM
from .package import GradCamPackageMethod
from .perchannel import PER_CHANNEL_VARIANTS, PerChannelCAM

ENGINES = ("auto", "fast", "package")  # what a caller may ask for
FAST, PACKAGE, OWN = "fast", "package", "own"  # what a method may have
_NAME = re.compile(r"[a-z0-9_+\-]+")  # a method name is also a file name: saliency_<name>.npz


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: ``factory(model, **kwargs)`` builds this project's implementation (None: the package's
    class only); ``package_class`` names its pytorch-grad-cam class (None: no package equivalent);
    ``reuses``: the parts of the classification forward (``feature_maps``, ``attentions``) that the factory's
    method reads in ``explain_batch``."""

    name: str
    factory: Optional[Callable[..., SaliencyMethod]]
    package_class: Optional[str] = None
    reuses: tuple[str, ...] = ()

    @property
    def engines(self) -> tuple[str, ...]:
        """``fast`` and / or ``package`` for a CAM of the package, ``own`` for a method of this project alone."""
        if self.factory is None:
            return (PACKAGE,)
        return (FAST, PACKAGE) if self.package_class is not None else (OWN,)

    def engine_for(self, requested: str) -> str:
        """The engine a run-wide choice (``--engine``) gives this method: an own method has one, and ignores it."""
        return "auto" if OWN in self.engines else requested


_METHODS: dict[str, MethodSpec] = {}
_ALIASES: dict[str, str] = {}


def register_method(name: str, factory: Optional[Callable[..., SaliencyMethod]], package_class: Optional[str] = None,
                    reuses: Sequence[str] = (), aliases: Sequence[str] = ()) -> MethodSpec:
    """Adds a saliency method to the registry, so that :func:`create_saliency` and the evaluation scripts'
    ``--method`` know it.

    A method subclasses :class:`~utils.explain.base.SaliencyMethod` and overrides ``compute`` (unnormalised maps
    (B, h, w) of the images and targets; the base class checks the inputs, restores the model and normalises);
    to reuse the classification forward it also overrides ``explain_batch`` and declares that here (``reuses``).

    Example::

        import torch
        from utils.explain import SaliencyMethod, register_method

        class ActivationMap(SaliencyMethod):
            \"\"\"The channel mean of the last feature map (class-agnostic).\"\"\"
            engine = "activation"

            def compute(self, images, targets):
                with torch.no_grad():
                    return self.model.forward_features(images).float().mean(dim=1)

        register_method("activation", ActivationMap)
        # python recognition_imagenet.py --plugin my_methods --method activation ...

    Args:
        name: the registry name (lower case letters, digits, ``_ + -``; its maps go to ``saliency_<name>.npz``); a
            name or alias already registered is a ValueError.
        factory: ``factory(model, **kwargs) -> SaliencyMethod``, e.g. the class; ``kwargs`` are those given to
            :func:`create_saliency`, with ``forward`` (a :class:`~utils.runtime.forward.ForwardSettings`) added
            where ``package_class`` is given (a fast path runs its own forwards). None: the package's class only.
        package_class: the pytorch-grad-cam class the method reproduces (``engine='package'`` runs it); None for a
            method of this project alone (then ``--engine`` does not apply to it).
        reuses: what ``explain_batch`` reads of the classification forward: ``feature_maps`` and / or
            ``attentions`` (set as the created method's ``reuses``; the evaluation keeps only what some method
            reads).
        aliases: other names (any case) that :func:`canonical_name` resolves to ``name``.

    Returns:
        the registered :class:`MethodSpec`.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"saliency method name {name!r}: use lower-case letters, digits, '_', '+', '-'")
    if factory is None and package_class is None:
        raise ValueError(f"saliency method '{name}' needs a factory or a package_class")
    unknown = sorted(set(reuses) - set(REUSABLE))
    if unknown:
        raise ValueError(f"saliency method '{name}': reuses {', '.join(unknown)}; expected some of "
                         f"{', '.join(REUSABLE)}")
    keys = [name, *(alias.strip().lower() for alias in aliases)]
    taken = [key for key in keys if key in _METHODS or key in _ALIASES]
    if taken:
        raise ValueError(f"saliency method '{name}': the name '{taken[0]}' is already registered "
                         f"(for '{_ALIASES.get(taken[0], taken[0])}')")
    spec = MethodSpec(name, factory, package_class, tuple(reuses))
    _METHODS[name] = spec
    _ALIASES.update({alias: name for alias in keys[1:]})
    return spec


def available_methods() -> list[str]:
    """Registry names accepted by :func:`create_saliency` (aliases left out), in registration order."""
    return list(_METHODS)


def method_spec(name: str) -> MethodSpec:
    """The registered capabilities of ``name`` (any spelling :func:`canonical_name` accepts)."""
    return _METHODS[canonical_name(name)]


def canonical_name(name: str) -> str:
    """A registry name for ``name`` (alias, any case, or a pytorch_grad_cam class name); ValueError if none."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key in _METHODS:
        return key
    by_class = {spec.package_class.lower(): spec.name for spec in _METHODS.values() if spec.package_class}
    if key in by_class:
        return by_class[key]
    raise ValueError(f"unknown saliency method '{name}': known are {', '.join(available_methods())}")


def create_saliency(name: str, model: nn.Module, engine: str = "auto", forward: Optional[ForwardSettings] = None,
                    **kwargs: Any) -> SaliencyMethod:
    """The saliency method ``name`` for ``model``.

    A method with a fast path (:func:`fast_names`: :class:`FastGradientCAM`, :class:`PerChannelCAM`,
    :class:`FastFullGrad`) uses it unless ``engine='package'``; the other CAM names run through pytorch-grad-cam;
    ``attention*``, ``random`` and other own methods have one engine. ``forward``: how the fast paths run their
    forwards (chunk, autocast, channels_last; the package ignores it). ``kwargs`` go to the method's class (e.g.
    ``batch_size`` for Score-CAM / Ablation-CAM, ``seed`` for random, ``target_layer(s)``).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown saliency engine '{engine}': expected one of {', '.join(ENGINES)}")
    spec = method_spec(name)
    if engine == PACKAGE or spec.factory is None:
        if spec.package_class is None:
            raise ValueError(f"'{spec.name}' is this project's own method: pytorch-grad-cam has no equivalent")
        if engine == FAST:
            raise ValueError(f"no fast path for '{spec.name}': fast paths exist for {', '.join(fast_names())}")
        if "target_layer" in kwargs:
            kwargs["target_layers"] = [kwargs.pop("target_layer")]
        method = GradCamPackageMethod(model, spec.package_class, **kwargs)
    else:
        if spec.package_class is not None:  # a fast path: one target layer, forwards as the caller runs them
            _one_target_layer(kwargs)
            kwargs["forward"] = forward
        method = spec.factory(model, **kwargs)
        method.reuses = spec.reuses
    method.name = spec.name
    return method


def fast_names() -> dict[str, str]:
    """Names with a fast path of this project (the default engine for them) -> the package class it reproduces."""
    return {spec.name: spec.package_class for spec in _METHODS.values() if FAST in spec.engines}


def _one_target_layer(kwargs: dict) -> None:
    if "target_layers" in kwargs:  # the package's spelling: one layer is the fast paths' only option
        layers = list(kwargs.pop("target_layers"))
        if len(layers) != 1:
            raise ValueError("the fast path takes one target layer; use engine='package' for several")
        kwargs["target_layer"] = layers[0]


def _fast_fullgrad(model: nn.Module, target_layer: Optional[nn.Module] = None, **kwargs: Any) -> FastFullGrad:
    if target_layer is not None:
        raise ValueError("FullGrad has no target layer: it sums the bias gradients of every layer")
    return FastFullGrad(model, **kwargs)


def _register_builtins() -> None:
    """pytorch-grad-cam's CAMs (with this project's fast path where there is one), then this project's own."""
    aliases = {"gradcam++": ("gradcampp", "gradcamplusplus"), "gradcam": ("grad-cam", "grad_cam"),
               "gradcam_elementwise": ("gradcamelementwise",), "kpca_cam": ("kpcacam",)}
    for variant, package_class in FAST_VARIANTS.items():
        register_method(variant, partial(FastGradientCAM, variant=variant), package_class, reuses=("feature_maps",),
                        aliases=aliases.get(variant, ()))
    for variant, package_class in PER_CHANNEL_VARIANTS.items():
        register_method(variant, partial(PerChannelCAM, variant=variant), package_class)
    for name, package_class in {"eigencam": "EigenCAM", "eigengradcam": "EigenGradCAM", "kpca_cam": "KPCA_CAM",
                                "fem": "FEM", "shapleycam": "ShapleyCAM", "finercam": "FinerCAM",
                                "randomcam": "RandomCAM"}.items():
        register_method(name, None, package_class, aliases=aliases.get(name, ()))
    register_method("fullgrad", _fast_fullgrad, "FullGrad")
    for name, package_class in {"segeigencam": "SegEigenCAM", "refinecam": "RefineCAM", "sess": "SESS"}.items():
        register_method(name, None, package_class)
    register_method("attention", partial(AttentionMaps, reduction="last"), reuses=("attentions",),
                    aliases=("attention_last", "raw_attention"))
    register_method("attention_mean", partial(AttentionMaps, reduction="mean"), reuses=("attentions",))
    register_method("attention_product", partial(AttentionMaps, reduction="product"), reuses=("attentions",))
    register_method("random", RandomMap)


_register_builtins()
