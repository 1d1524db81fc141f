"""Generated datasets (the built-in shapes, exported Fashion-MNIST) share one layout, so they load like any user
data::

    <root>/manifest.json   generation parameters, written last (marks the folder complete)
    <root>/classes.txt     one class name per line
    <root>/train.csv       paths relative to <root>/images
    <root>/val.csv
    <root>/images/...      PNG files
    <root>/masks/...       PNG 0/255 object masks, same relative names as images/ (the built-in shapes)

A folder is written once into a temporary folder, then renamed into place.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from utils.runtime.io import current_umask

IMAGES_DIRNAME = "images"
MASKS_DIRNAME = "masks"
MANIFEST_FILENAME = "manifest.json"


def _read_manifest(root: Path) -> dict | None:
    try:
        return json.loads((root / MANIFEST_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def ensure_generated(root: Path, manifest: dict, generate: Callable[[Path], None]) -> Path:
    """Return ``root`` if it holds a dataset made with ``manifest``; else run ``generate`` atomically.

    A killed generation leaves only a hidden temporary folder, never a half dataset at ``root``.
    Concurrent callers (e.g. DDP ranks) each generate, and the first rename wins.
    """
    if _read_manifest(root) == manifest:
        return root
    if root.is_dir() and any(root.iterdir()) and _read_manifest(root) is None:
        # never delete a folder that this code did not write
        raise FileExistsError(f"{root} exists and is not a generated dataset (no {MANIFEST_FILENAME}); "
                              f"remove it or choose another root")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes it private; give it the mode a plain mkdir would
    try:
        generate(tmp)
        (tmp / MANIFEST_FILENAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        try:
            os.rename(tmp, root)  # replaces a missing or empty root
        except OSError:
            if _read_manifest(root) == manifest:  # another process finished first
                return root
            stale = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
            os.rename(root, stale / root.name)
            os.rename(tmp, root)
            shutil.rmtree(stale, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def load_mask(dataset_root: str | os.PathLike, relative_path: str) -> np.ndarray:
    """The bool object mask of image ``relative_path`` (a path from train.csv/val.csv) of a generated dataset."""
    path = Path(dataset_root) / MASKS_DIRNAME / relative_path
    if not path.is_file():
        raise FileNotFoundError(f"mask not found: {path}")
    try:
        with Image.open(path) as mask:
            return np.asarray(mask.convert("L")) >= 128
    except (OSError, ValueError) as err:
        raise OSError(f"cannot read mask {path}: {err}") from err
