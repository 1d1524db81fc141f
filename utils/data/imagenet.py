"""ImageNet's own layout, as its archives unpack: ``<root>/train/<wnid>/*.JPEG`` and ``<root>/val``, the validation
images either in the same class folders or flat (``ILSVRC2012_img_val.tar`` unpacked), labelled then by
``LOC_val_solution.csv`` (Kaggle's ``ImageId,PredictionString`` file, in the root) or, for the 50,000 ILSVRC-2012
images, by the repository's ``data/imagenet_val.csv``. Labels follow the sorted class-folder names of ``train/`` (the
sorted-WNID order of torchvision and timm)."""
from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from .base import ImageDataset, PathLike, require_dir
from .folder import ImageFolderDataset
from .lists import read_list_file

TRAIN_DIRNAME, VAL_DIRNAME = "train", "val"
SOLUTION_FILENAME = "LOC_val_solution.csv"
REPOSITORY_VAL_LIST = Path(__file__).resolve().parents[2] / "data" / "imagenet_val.csv"
NUM_IMAGENET_CLASSES = 1000


def is_imagenet_layout(root: Optional[PathLike]) -> bool:
    """Whether ``root`` holds ImageNet's ``train/`` or ``val/`` folder."""
    return root is not None and any((Path(root) / name).is_dir() for name in (TRAIN_DIRNAME, VAL_DIRNAME))


def _class_folders(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir()) if folder.is_dir() else []


def _images(folder: Path) -> list[str]:
    return sorted(f.name for f in folder.iterdir() if f.is_file() and f.suffix.lower() in ImageFolderDataset.EXTENSIONS)


def _solution_labels(path: Path, classes: list[str]) -> dict[str, int]:
    """``image file name -> label`` of a ``LOC_val_solution.csv`` (``ImageId,PredictionString``, the class the first
    word of the prediction string)."""
    labels = {}
    with open(path, newline="", encoding="utf-8-sig") as file:
        for line, row in enumerate(csv.DictReader(file), 2):
            words = (row.get("PredictionString") or "").split()
            if not row.get("ImageId") or not words:
                raise ValueError(f"{path}:{line}: expected ImageId,PredictionString with a class first")
            if words[0] not in classes:
                raise ValueError(f"{path}:{line}: class {words[0]} is not one of the {len(classes)} class folders "
                                 f"of train/")
            labels[row["ImageId"]] = classes.index(words[0])
    return labels


class ImageNetDataset(ImageDataset):
    """The ``split`` (``train`` or ``val``) of ImageNet's layout under ``root``; paths relative to ``root``, class
    names the folder names (WNIDs) of ``train/`` (of ``val/`` without one)."""

    def __init__(self, root: PathLike, split: str, transform: Callable | None = None,
                 num_classes: int | None = None) -> None:
        root = require_dir(root, "--root_data (ImageNet's layout)")
        folder = require_dir(root / split, f"--root_data {root}: ImageNet's {split}/ folder")
        classes = _class_folders(root / TRAIN_DIRNAME) or _class_folders(root / VAL_DIRNAME)
        if num_classes is not None and len(classes) > num_classes:
            raise ValueError(f"{root} has {len(classes)} class folders, more than --classes {num_classes}")
        if _class_folders(folder):
            samples = self._foldered(folder, classes)
            self.labels_origin = f"the class folders of {folder}"
        else:
            samples = self._flat(root, folder, classes, num_classes)
        if not samples:
            raise ValueError(f"{folder}: no images with extensions {', '.join(ImageFolderDataset.EXTENSIONS)}")
        self.split = split
        super().__init__(root, samples, transform, classes or None, f"the class folders of {root}")
        if num_classes is not None:
            self.check_labels(num_classes, f"--classes {num_classes}")

    @staticmethod
    def _foldered(folder: Path, classes: list[str]) -> list[tuple[str, int]]:
        samples = []
        for name in _class_folders(folder):
            if name not in classes:
                raise ValueError(f"{folder / name}: a class folder that {folder.parent / TRAIN_DIRNAME} does not have")
            samples += [(f"{folder.name}/{name}/{image}", classes.index(name)) for image in _images(folder / name)]
        return samples

    def _flat(self, root: Path, folder: Path, classes: list[str], num_classes: Optional[int]) -> list[tuple[str, int]]:
        images = _images(folder)
        if (root / SOLUTION_FILENAME).is_file():
            labels = _solution_labels(root / SOLUTION_FILENAME, classes)
            self.labels_origin = str(root / SOLUTION_FILENAME)
            stem_labels = {Path(name).stem: label for name, label in labels.items()}
            missing = [image for image in images if Path(image).stem not in stem_labels]
            if missing:
                raise ValueError(f"{folder / missing[0]}: no label in {root / SOLUTION_FILENAME} "
                                 f"({len(missing)} of {len(images)} images have none)")
            return [(f"{folder.name}/{image}", stem_labels[Path(image).stem]) for image in images]
        if REPOSITORY_VAL_LIST.is_file() and len(classes) in (0, NUM_IMAGENET_CLASSES):
            labels = {row.path: row.label for row in read_list_file(REPOSITORY_VAL_LIST)}
            missing = [image for image in images if image not in labels]
            if not missing:
                self.labels_origin = str(REPOSITORY_VAL_LIST)
                return [(f"{folder.name}/{image}", labels[image]) for image in images]
        raise ValueError(f"{folder}: flat validation images need their labels: {SOLUTION_FILENAME} in {root}, or "
                         f"a list file (--path_list / --val_list with --root_data {folder})")

    @property
    def origin(self) -> str:
        return f"ImageNet's {self.split}/ in {self.root} (labels: {self.labels_origin})"

    def check_labels(self, num_classes: int, classes_origin: str) -> None:
        for path, label in self.samples:
            if label >= num_classes:
                raise ValueError(f"{self.root / path}: label {label} (from {self.labels_origin}) is outside "
                                 f"[0, {num_classes}) for {classes_origin}")
