"""Result files shared by recognition_imagenet.py and objrecon_imagenet.py: CSV / JSON reports, saliency map
files, the protocol card, overlay grids and insertion / deletion curve plots. Every file is written
atomically (temporary file, then rename)."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import platform
import zipfile
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from .checkpoint import atomic_write, save_json
from .metrics import auc

PathLike = Union[str, Path]
MAPS_PREFIX = "saliency_"


def write_csv(path: PathLike, rows: Sequence[Mapping[str, Any]], fields: Optional[Sequence[str]] = None) -> Path:
    fields = list(fields or dict.fromkeys(k for row in rows for k in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write(path, lambda file: file.write(text.getvalue().encode()))


def read_csv(path: PathLike) -> list[dict]:
    with Path(path).open(newline="") as file:
        return list(csv.DictReader(file))


def maps_path(store_dir: PathLike, method: str) -> Path:
    return Path(store_dir) / f"{MAPS_PREFIX}{method.replace('+', 'p')}.npz"


def model_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of every tensor of ``model``'s state dict (names, shapes, dtypes and values)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]


def dataset_fingerprint(samples: Sequence[tuple[str, int]]) -> str:
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


def evaluation_identity(model: torch.nn.Module, config: Mapping[str, Any], samples: Sequence[tuple[str, int]],
                        preprocessing: Mapping[str, Any]) -> dict:
    """What saliency maps depend on besides the method: the model (architecture and weights), the data rows and
    their preprocessing, and the classes. Stored in every saliency file and checked before its maps are scored."""
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


def save_maps(store_dir: PathLike, method: str, maps: torch.Tensor, indices: Sequence[int],
              targets: Sequence[int], class_source: str, identity: Optional[Mapping[str, Any]] = None) -> Path:
    """One file per method: maps (N, h, w) at their native resolution, row i for dataset row ``indices[i]``, with
    the :func:`evaluation_identity` of the model and data that made them."""
    buffer = io.BytesIO()
    np.savez(buffer, maps=maps.detach().float().cpu().numpy(), indices=np.asarray(indices, dtype=np.int64),
             targets=np.asarray(targets, dtype=np.int64), method=np.asarray(method),
             class_source=np.asarray(class_source), identity=np.asarray(json.dumps(identity or {})))
    return atomic_write(maps_path(store_dir, method), lambda file: file.write(buffer.getvalue()))


def load_maps(path: PathLike) -> dict:
    """Reads a file written by :func:`save_maps` (no pickled objects are allowed); ``identity`` is None for files
    of versions that did not record it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"saliency file not found: {path} (run recognition_imagenet.py --salient first, "
                                "or give --method to compute the maps)")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a saliency file (an .npz archive written by recognition_imagenet.py)")
    keys = ("maps", "indices", "targets", "method", "class_source")
    try:
        with np.load(path, allow_pickle=False) as data:
            loaded = {key: data[key] for key in keys}
            identity = json.loads(str(data["identity"])) if "identity" in data.files else None
    except KeyError as error:
        raise ValueError(f"{path} is not a saliency file of recognition_imagenet.py: it has no {error} array") \
            from None
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a readable saliency file: {error}".splitlines()[0]) from None
    maps = loaded["maps"]
    if maps.ndim != 3 or len(maps) != len(loaded["indices"]):
        raise ValueError(f"{path}: expected maps (N, h, w) with one dataset index per map")
    if 0 in maps.shape[1:]:
        raise ValueError(f"{path}: its maps are empty ({maps.shape[1]}x{maps.shape[2]} pixels)")
    return {"maps": torch.from_numpy(maps), "indices": loaded["indices"].tolist(),
            "targets": loaded["targets"].tolist(), "method": str(loaded["method"]),
            "class_source": str(loaded["class_source"]), "identity": identity or None}


def degenerate_maps_note(maps: torch.Tensor) -> Optional[str]:
    """A warning when maps carry no ranking: 1x1 maps, or maps whose pixels are all equal (scored as all-zero
    maps: every pixel ties, so insertion/deletion follow raster order and the masked image is black)."""
    if maps.shape[-2:] == (1, 1):
        return "its maps are 1x1: every pixel ties, so insertion/deletion follow raster order only"
    flat = maps.flatten(1)
    constant = int((flat.amax(1) == flat.amin(1)).sum())
    if constant:
        return (f"{constant} of {len(maps)} maps are constant (scored as all-zero maps: every pixel ties, so "
                "insertion/deletion follow raster order)")
    return None


def library_versions() -> dict:
    import timm
    import torchvision
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "torchvision": torchvision.__version__, "timm": timm.__version__}
    try:
        from importlib.metadata import version
        versions["grad-cam"] = version("grad-cam")
    except Exception:  # the package metadata is optional information here
        pass
    return versions


def save_report(path: PathLike, report: Mapping[str, Any]) -> Path:
    return save_json(path, {**report, "versions": library_versions()})


def _to_uint8_image(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    pixels = image.detach().float().cpu() * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    return (pixels.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def save_overlay_grid(path: PathLike, images: torch.Tensor, maps_by_method: Mapping[str, torch.Tensor],
                      titles: Sequence[str], mean: Sequence[float], std: Sequence[float]) -> Path:
    """A PNG grid: one row per image (the image, then each method's map over it), titled with class names."""
    from torch.nn.functional import interpolate

    methods = list(maps_by_method)
    rows, cols = len(images), 1 + len(methods)
    figure, axes = _pyplot().subplots(rows, cols, figsize=(2.2 * cols, 2.3 * rows), squeeze=False)
    size = images.shape[-2:]
    for row, image in enumerate(images):
        picture = _to_uint8_image(image, mean, std)
        axes[row, 0].imshow(picture)
        axes[row, 0].set_title(titles[row], fontsize=7)
        for col, method in enumerate(methods, start=1):
            heat = interpolate(maps_by_method[method][row][None, None].float(), size=size, mode="bilinear",
                               align_corners=False)[0, 0].cpu().numpy()
            axes[row, col].imshow(picture)
            axes[row, col].imshow(heat, cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if row == 0:
                axes[row, col].set_title(method, fontsize=8)
    for axis in axes.flat:
        axis.axis("off")
    figure.tight_layout()
    return _save_figure(figure, path)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on clusters and CI
    import matplotlib.pyplot as plt
    return plt


def _draw_curves(axis, curves: Mapping[str, np.ndarray], title: str, ylabel: str) -> None:
    """One line per label over the fraction of pixels changed, its AUC (x100, trapezoid) in the legend."""
    for label, curve in curves.items():
        curve = np.asarray(curve, dtype=float)
        area = float(auc(torch.from_numpy(curve))) if len(curve) > 1 else float(curve[0])
        axis.plot(np.linspace(0, 1, len(curve)), curve, label=f"{label} (AUC {100 * area:.1f})")
    axis.set_xlabel("fraction of pixels")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.set_xlim(0, 1)
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)


def save_curve_plot(path: PathLike, curves: Mapping[str, np.ndarray], title: str, ylabel: str = "class score"
                    ) -> Path:
    """Mean curves (one line per label, e.g. ``gradcam / ca``) over the fraction of pixels changed."""
    figure, axis = _pyplot().subplots(figsize=(4.5, 3.4))
    _draw_curves(axis, curves, title, ylabel)
    figure.tight_layout()
    return _save_figure(figure, path)


def save_curve_panels(path: PathLike, panels: Mapping[str, Mapping[str, np.ndarray]], title: str,
                      ylabel: str = "class score") -> Path:
    """Side-by-side panels of mean curves, e.g. ``{"insertion": {label: curve}, "deletion": {...}}``."""
    figure, axes = _pyplot().subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for axis, (name, curves) in zip(axes[0], panels.items()):
        _draw_curves(axis, curves, name, ylabel)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return _save_figure(figure, path)


def _save_figure(figure, path: PathLike) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    _pyplot().close(figure)
    return atomic_write(path, lambda file: file.write(buffer.getvalue()))
