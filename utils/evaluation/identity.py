"""The identity of an evaluation: what saliency maps depend on besides the method (the model's architecture and
weights, the data rows and their preprocessing, the classes). Stored in every saliency file and checked before
its maps are scored, so that maps of another model or other data are never scored as this one's."""
from __future__ import annotations

import hashlib
from typing import Any, Mapping, Sequence

import torch


def model_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of every tensor of ``model``'s state dict (names, shapes, dtypes and values)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]


def dataset_fingerprint(samples: Sequence[tuple[str, Any]]) -> str:
    """A short hash of a dataset's (relative path, label) rows, in order: the same list file gives the same hash
    wherever the images live."""
    digest = hashlib.sha256()
    for relative_path, label in samples:
        digest.update(f"{relative_path},{label}\n".encode())
    return digest.hexdigest()[:16]


def preprocessing_card(imsize: int, crop_pct: float, squash: bool, mean: Sequence[float], std: Sequence[float]
                       ) -> dict:
    """The evaluation preprocessing, as recorded in reports and saliency files."""
    return {"imsize": imsize, "crop_pct": None if squash else crop_pct, "squash": squash, "mean": list(mean),
            "std": list(std)}


def evaluation_identity(model: torch.nn.Module, config: Mapping[str, Any], samples: Sequence[tuple[str, Any]],
                        preprocessing: Mapping[str, Any]) -> dict:
    return {
        "model": {"backbone": config.get("backbone"), "pool": config.get("pool"), "heads": config.get("heads"),
                  "weights": model_fingerprint(model)},
        "data": {"rows": len(samples), "list": dataset_fingerprint(samples), "preprocessing": dict(preprocessing)},
        "classes": {"count": config.get("classes"), "names": config.get("class_names")},
    }


def identity_mismatch(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between the identity stored with maps and the current evaluation's."""
    differences = []
    for key in ("backbone", "pool", "heads", "weights"):
        if saved["model"].get(key) != current["model"].get(key):
            differences.append(f"model {key} {saved['model'].get(key)} (now {current['model'].get(key)})")
    if saved["data"].get("list") != current["data"].get("list"):
        differences.append(f"data rows {saved['data'].get('rows')} with list hash {saved['data'].get('list')} "
                           f"(now {current['data'].get('rows')}, {current['data'].get('list')})")
    for key, value in saved["data"].get("preprocessing", {}).items():
        if current["data"]["preprocessing"].get(key) != value:
            differences.append(f"preprocessing {key} {value} (now {current['data']['preprocessing'].get(key)})")
    if saved["classes"] != current["classes"]:
        differences.append(f"classes {saved['classes'].get('count')} (now {current['classes'].get('count')})")
    return differences
