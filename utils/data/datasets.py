"""Datasets of real image files: a list file's images, or an image folder with one sub-folder per class; and the
dataset behind the data flags (the built-in set by default)."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch.utils.data import Dataset

from .builtin import ensure_builtin_dataset
from .generated import IMAGES_DIRNAME
from .lists import CLASSES_FILENAME, read_class_names, read_list_file
from .transforms import DEFAULT_CROP_PCT, build_transform

PathLike = str | os.PathLike
SINGLE_LABEL, MULTI_LABEL = "single-label", "multi-label"
# --dataset: single-label lists, image folders and the built-in shapes; or Pascal VOC's multi-label layout
DATASET_KINDS = ("imagenet", "voc")


def _require_dir(root: PathLike, what: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{what} not found or not a directory: {root}")
    return root


def _check_images_exist(root: Path, rel_paths: Sequence[str], source: str) -> None:
    missing = [p for p in rel_paths if not (root / p).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(rel_paths)} images listed in {source} are missing under {root}; "
            f"first missing: {root / missing[0]}")


def _load_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")  # convert() forces a full decode, so truncation fails here
    except (OSError, ValueError) as err:  # PIL.UnidentifiedImageError is an OSError
        raise OSError(f"cannot read image {path}: {err}") from err


class ImageDataset(Dataset):
    """(image, label) pairs from ``root / relative_path`` for each ``(relative_path, label)`` in ``samples``.

    Attributes: ``root``, ``samples``, ``targets``, ``classes`` (class names or None), ``transform``.
    """

    task = SINGLE_LABEL

    def __init__(
            self,
            root: Path,
            samples: list[tuple[str, int]],
            transform: Callable | None,
            classes: Sequence[str] | None,
    ) -> None:
        self.root = root
        self.samples = samples
        self.targets = [label for _, label in samples]
        self.classes = list(classes) if classes is not None else None
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | Image.Image, int]:
        rel_path, label = self.samples[index]
        image = _load_rgb(self.root / rel_path)
        if self.transform is not None:
            image = self.transform(image)
        return image, label


class ListDataset(ImageDataset):
    """Images listed in a list file, loaded from ``root / relative_path``.

    Everything that can be checked without decoding images is checked on construction, so a wrong
    ``--root_data``/``--path_list``/``--classes`` or a negative label fails at start-up with the offending file
    and line (``line_numbers`` keeps each sample's line for later checks).
    """

    def __init__(
            self,
            root: PathLike,
            list_file: PathLike,
            transform: Callable | None = None,
            num_classes: int | None = None,
            classes: Sequence[str] | None = None,
    ) -> None:
        root = _require_dir(root, "image root")
        self.list_file = Path(list_file)
        rows = read_list_file(self.list_file)
        for _, label, line_number in rows:
            if label < 0:
                raise ValueError(f"{self.list_file}:{line_number}: label {label} is negative; labels are class "
                                 f"indices 0, 1, 2, ...")
            if num_classes is not None and label >= num_classes:
                raise ValueError(
                    f"{self.list_file}:{line_number}: label {label} is outside [0, {num_classes}) "
                    f"for --classes {num_classes}")
        _check_images_exist(root, [p for p, _, _ in rows], str(self.list_file))
        super().__init__(root, [(p, label) for p, label, _ in rows], transform, classes)
        self.line_numbers = [line_number for _, _, line_number in rows]


class ImageFolderDataset(ImageDataset):
    """``root/<class>/<image>`` with one sub-folder per class (sorted names -> labels 0..C-1)."""

    EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")

    def __init__(self, root: PathLike, transform: Callable | None = None, num_classes: int | None = None) -> None:
        root = _require_dir(root, "image folder")
        class_dirs = sorted(d for d in root.iterdir() if d.is_dir())
        if not class_dirs:
            raise ValueError(f"{root}: expected one sub-folder per class, found none")
        if num_classes is not None and len(class_dirs) > num_classes:
            raise ValueError(f"{root} has {len(class_dirs)} class folders, more than --classes {num_classes}")
        samples = [
            (file.relative_to(root).as_posix(), label)
            for label, class_dir in enumerate(class_dirs)
            for file in sorted(class_dir.rglob("*"))
            if file.suffix.lower() in self.EXTENSIONS and file.is_file()
        ]
        if not samples:
            raise ValueError(f"{root}: no images with extensions {', '.join(self.EXTENSIONS)}")
        super().__init__(root, samples, transform, [d.name for d in class_dirs])


def build_dataset(
        root_data: PathLike | None,
        path_list: PathLike | None,
        imsize: int,
        train: bool,
        mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
        std: Sequence[float] = IMAGENET_DEFAULT_STD,
        num_classes: int | None = None,
        crop_pct: float = DEFAULT_CROP_PCT,
        squash: bool = False,
        builtin_seed: int = 0,
        scale: tuple[float, float] = (0.08, 1.0),
        dataset: str = "imagenet",
) -> ImageDataset:
    """The dataset behind ``--dataset`` / ``--root_data`` / ``--path_list``.

    ``dataset`` 'imagenet' (single-label):

    * ``root_data`` None: the built-in dataset (generated on first use), its train.csv or val.csv;
    * ``path_list`` given: a list file, resolved from the working directory, else under ``root_data``;
      class names come from a ``classes.txt`` next to it when there is one;
    * otherwise ``root_data`` must hold one sub-folder per class.

    ``dataset`` 'voc' (multi-label, :class:`~utils.data.voc.VOCDataset`): ``root_data`` a VOCdevkit year folder
    (None: the built-in multi-label set), ``path_list`` an image set (default: train, or val when not ``train``),
    a multi-label list file or a JSON list.

    ``scale`` is the training RandomResizedCrop area range.
    """
    if dataset not in DATASET_KINDS:
        raise ValueError(f"--dataset {dataset}: expected one of {', '.join(DATASET_KINDS)}")
    transform = build_transform(imsize, mean, std, train=train, crop_pct=crop_pct, squash=squash, scale=scale)
    if dataset == "voc":
        # voc builds on this module's ImageDataset, so it is imported here, not at the top
        from .builtin_voc import ensure_builtin_voc
        from .voc import VOCDataset
        root = ensure_builtin_voc(seed=builtin_seed) if root_data is None else root_data
        return VOCDataset(root, path_list or ("train" if train else "val"), transform, num_classes)
    if root_data is None:
        builtin_root = ensure_builtin_dataset(seed=builtin_seed)
        root_data = builtin_root / IMAGES_DIRNAME
        path_list = builtin_root / ("train.csv" if train else "val.csv")
    elif path_list is None:
        return ImageFolderDataset(root_data, transform, num_classes)
    list_file = Path(path_list)
    if not list_file.is_file() and (Path(root_data) / path_list).is_file():
        list_file = Path(root_data) / path_list
    if not list_file.is_file():
        raise FileNotFoundError(f"--path_list {path_list} not found in the working directory nor under {root_data}")
    classes_file = list_file.parent / CLASSES_FILENAME
    classes = read_class_names(classes_file) if classes_file.is_file() else None
    return ListDataset(root_data, list_file, transform, num_classes, classes=classes)


def subset_indices(n: int, fraction: float, seed: int = 0) -> list[int]:
    """A seeded random ``fraction`` of ``range(n)`` (at least one index), in increasing order."""
    if not 0 < fraction <= 1:
        raise ValueError(f"--fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return list(range(n))
    count = max(1, round(n * fraction))
    return sorted(np.random.default_rng(seed).choice(n, count, replace=False).tolist())


def check_indexes(indexes: Sequence[int], n: int) -> None:
    """Raise if any index is not a valid row of a dataset of size ``n``."""
    for index in indexes:
        if not 0 <= index < n:
            raise ValueError(f"--indexes: index {index} is out of range for a dataset of {n} images")
