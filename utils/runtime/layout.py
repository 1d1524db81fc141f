"""The layout of the folders the project writes: every file name, and every save and load of those files (the role
of timm's ``CheckpointSaver``). Writes are atomic (a temporary file, then a rename).

An evaluation folder (``--store_dir`` of recognition_imagenet.py and objrecon_imagenet.py)::

    predictions.csv          recognition: one row per evaluated image
    classification.json      recognition: accuracies, subset, model, data (and the localisation scores)
    saliency_<method>.npz    recognition: the maps of one method (+ the model/data identity), rows aligned
    overlays.png             recognition: the first images with each method's map
    metrics.csv              objrecon: every metric per image and method
    summary.json             objrecon: the means, the mean curves and the protocol card
    curves_<name>.png        objrecon: insertion / deletion curves
"""
from __future__ import annotations

import csv
import io
import json
import platform
import zipfile
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from utils.checkpoint import atomic_write, save_json

PathLike = Union[str, Path]


def library_versions() -> dict:
    """The versions every report records, so that numbers can be traced to the code that made them."""
    from importlib.metadata import PackageNotFoundError, version

    import timm
    import torchvision
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "torchvision": torchvision.__version__, "timm": timm.__version__}
    try:
        versions["grad-cam"] = version("grad-cam")
    except PackageNotFoundError:
        pass
    return versions


def write_csv(path: PathLike, rows: Sequence[Mapping[str, Any]], fields: Optional[Sequence[str]] = None) -> Path:
    fields = list(fields or dict.fromkeys(k for row in rows for k in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write(path, lambda file: file.write(text.getvalue().encode()))


class EvaluationFolder:
    """The files of one evaluation folder; ``path`` need not exist yet."""

    PREDICTIONS = "predictions.csv"
    CLASSIFICATION = "classification.json"
    MAPS_PREFIX, MAPS_SUFFIX = "saliency_", ".npz"
    OVERLAYS = "overlays.png"
    METRICS = "metrics.csv"
    SUMMARY = "summary.json"
    CURVES_PREFIX = "curves_"

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"EvaluationFolder({str(self.path)!r})"

    # ---- names

    @property
    def predictions(self) -> Path:
        return self.path / self.PREDICTIONS

    @property
    def classification(self) -> Path:
        return self.path / self.CLASSIFICATION

    @property
    def overlays(self) -> Path:
        return self.path / self.OVERLAYS

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def summary(self) -> Path:
        return self.path / self.SUMMARY

    def maps(self, method: str) -> Path:
        return self.path / f"{self.MAPS_PREFIX}{file_stem(method)}{self.MAPS_SUFFIX}"

    def curves(self, name: str) -> Path:
        return self.path / f"{self.CURVES_PREFIX}{file_stem(name)}.png"

    def saved_maps(self) -> list[Path]:
        return sorted(self.path.glob(f"{self.MAPS_PREFIX}*{self.MAPS_SUFFIX}"))

    @classmethod
    def method_of(cls, maps_file: Path) -> str:
        """The method named by a maps file's name (``+`` is spelled ``p`` there; the file itself records the name)."""
        return maps_file.name[len(cls.MAPS_PREFIX):-len(cls.MAPS_SUFFIX)]

    # ---- saves and loads

    def write_predictions(self, rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> Path:
        return write_csv(self.predictions, rows, fields)

    def write_metrics(self, rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> Path:
        return write_csv(self.metrics, rows, fields)

    @staticmethod
    def write_report(path: PathLike, report: Mapping[str, Any]) -> Path:
        """A JSON report (classification.json, summary.json), with the library versions."""
        return save_json(path, {**report, "versions": library_versions()})

    def save_maps(self, method: str, maps: torch.Tensor, indices: Sequence[int], targets: Sequence[int],
                  class_source: str, identity: Optional[Mapping[str, Any]] = None) -> Path:
        """One file per method: maps (N, h, w) at their native resolution, row i for dataset row ``indices[i]``, with
        the identity of the model and data that made them."""
        buffer = io.BytesIO()
        np.savez(buffer, maps=maps.detach().float().cpu().numpy(), indices=np.asarray(indices, dtype=np.int64),
                 targets=np.asarray(targets, dtype=np.int64), method=np.asarray(method),
                 class_source=np.asarray(class_source), identity=np.asarray(json.dumps(identity or {})))
        return atomic_write(self.maps(method), lambda file: file.write(buffer.getvalue()))

    @staticmethod
    def load_maps(path: PathLike) -> dict:
        """Reads a file written by :meth:`save_maps` (no pickled objects are allowed); ``identity`` is None for files
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

    @classmethod
    def read_summary(cls, path: PathLike, flag: str = "--compare") -> dict:
        """An objrecon summary, from its evaluation folder or the file itself (one line naming ``flag`` if not)."""
        path = Path(path)
        file = path / cls.SUMMARY if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"{flag}: {file} not found (give an objrecon_imagenet.py --store_dir or its "
                                    f"{cls.SUMMARY})")
        try:
            summary = json.loads(file.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{flag}: {file} is not valid JSON: {error}") from None
        if not isinstance(summary, dict) or not {"results", "curves", "protocol"} <= set(summary):
            raise ValueError(f"{flag}: {file} is not a summary of objrecon_imagenet.py")
        summary["path"] = str(file)
        return summary


def file_stem(name: str) -> str:
    """A method or plot name as it appears in file names (``gradcam++`` -> ``gradcampp``)."""
    return name.replace("+", "p")
