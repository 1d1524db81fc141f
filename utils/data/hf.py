"""Hugging Face datasets saved on disk (``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``, read back with
``datasets.load_from_disk``): rows of an image column (an ``Image`` feature) and a class column (a ``ClassLabel``,
or integers), an optional ``mask`` image column for the object masks. Arrow tables are memory-mapped and read by
row, so the dataset is map-style like the others. The ``datasets`` package is the ``hf`` extra, imported when this
format is read."""
from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image

from .base import ImageDataset, PathLike, load_rgb, require_dir
from .masks import ObjectMasks

IMAGE_COLUMNS = ("image", "img", "jpg", "png")
LABEL_COLUMNS = ("label", "labels", "cls", "class")
MASK_COLUMN = "mask"
SAVED_MARKERS = ("dataset_info.json", "dataset_dict.json", "state.json")
TRAIN_SPLIT = "train"
EVAL_SPLITS = ("validation", "val", "test")


def import_datasets() -> Any:
    """The ``datasets`` package, or one line naming the extra that installs it."""
    try:
        import datasets
    except ImportError:  # a user's setup, not a bug: one line, as the scripts print a ValueError
        raise ValueError("--dataset hf needs the package datasets (the hf extra): "
                          "pip install 'datasets>=2.14'") from None
    return datasets


def _column(features: dict, names: Sequence[str], accepts: Callable[[Any], bool]) -> Optional[str]:
    """The first column of ``features`` that ``accepts`` takes, else the first of ``names`` there is."""
    typed = next((name for name, feature in features.items() if accepts(feature)), None)
    return typed or next((name for name in names if name in features), None)


def default_split(root: Path, train: bool) -> Optional[str]:
    """The split of the DatasetDict saved at ``root`` (its ``dataset_dict.json``) that training (``train``) or
    evaluation reads by default, None where it has none (or ``root`` holds one Dataset)."""
    try:
        splits = json.loads((root / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
    except (OSError, ValueError, AttributeError):
        return None
    return next((name for name in ([TRAIN_SPLIT] if train else EVAL_SPLITS) if name in splits), None)


def choose_split(splits: Sequence[str], selection: Optional[str], train: bool, root: Path) -> str:
    """The split of a saved DatasetDict: ``--path_list`` where given, else ``train`` for training and the first of
    validation / val / test for evaluation."""
    wanted = [selection] if selection else [TRAIN_SPLIT] if train else list(EVAL_SPLITS)
    split = next((name for name in wanted if name in splits), None)
    if split is None:
        raise ValueError(f"--dataset hf: {root} has the splits {', '.join(splits)}, none of "
                         f"{', '.join(wanted)} (name one with --path_list)")
    return split


class HFDataset(ImageDataset):
    """Single-label rows of a Hugging Face dataset saved on disk at ``root``: a Dataset, or a DatasetDict and one of
    its splits (``selection``, default :func:`choose_split`'s). A row's path is ``hf:<split>#<row>``; class names
    are the ``ClassLabel``'s."""

    def __init__(self, root: PathLike, selection: Optional[str] = None, transform: Callable | None = None,
                 num_classes: int | None = None, train: bool = False) -> None:
        datasets = import_datasets()
        root = require_dir(root, "--root_data (a Hugging Face dataset saved with save_to_disk)")
        if not any((root / marker).is_file() for marker in SAVED_MARKERS):
            raise ValueError(f"--dataset hf: {root} is not a Hugging Face dataset saved with save_to_disk (no "
                             f"{' or '.join(SAVED_MARKERS[:2])}); an image folder reads as --dataset imagenet")
        loaded = datasets.load_from_disk(str(root))
        if isinstance(loaded, datasets.DatasetDict):
            self.split = choose_split(list(loaded), selection, train, root)
            table = loaded[self.split]
        elif selection:
            raise ValueError(f"--dataset hf: {root} holds one split, not a DatasetDict: leave out --path_list "
                             f"{selection}")
        else:
            self.split, table = root.name, loaded
        where = f"{root} ({self.split})"
        features = table.features
        columns = ", ".join(features) or "none"
        self.image_column = _column(features, IMAGE_COLUMNS, lambda f: isinstance(f, datasets.Image))
        if self.image_column is None:
            raise ValueError(f"--dataset hf: {where} has no image column (an Image feature, or one named "
                             f"{'/'.join(IMAGE_COLUMNS)}); its columns: {columns}")
        self.label_column = _column(features, LABEL_COLUMNS, lambda f: isinstance(f, datasets.ClassLabel))
        if self.label_column is None:
            raise ValueError(f"--dataset hf: {where} has no label column (a ClassLabel, or one named "
                             f"{'/'.join(LABEL_COLUMNS)}); its columns: {columns}")
        labels = list(table[self.label_column])
        for row, label in enumerate(labels):
            if isinstance(label, bool) or not isinstance(label, int):
                raise ValueError(f"--dataset hf: {where} row {row}: column '{self.label_column}' holds {label!r}, "
                                 f"expected an integer class (single-label data)")
            if label < 0 or (num_classes is not None and label >= num_classes):
                raise ValueError(f"--dataset hf: {where} row {row}: class {label} is outside [0, {num_classes}) "
                                 f"for --classes {num_classes}" if label >= 0 else
                                 f"--dataset hf: {where} row {row}: class {label} is negative")
        label_feature = features[self.label_column]
        classes = label_feature.names if isinstance(label_feature, datasets.ClassLabel) else None
        mask = features.get(MASK_COLUMN)
        self.mask_column = MASK_COLUMN if isinstance(mask, datasets.Image) else None
        self.location = root
        super().__init__(root, [(f"hf:{self.split}#{row}", label) for row, label in enumerate(labels)], transform,
                         classes, f"the ClassLabel of {where}" if classes else None)
        self._table = self._undecoded(table)

    def _undecoded(self, table: Any) -> Any:
        """``table``'s image columns as stored bytes: this module decodes them, naming the row when it cannot."""
        image = import_datasets().Image(decode=False)
        table = table.cast_column(self.image_column, image)
        return table.cast_column(self.mask_column, image) if self.mask_column else table

    @property
    def origin(self) -> str:
        return f"the Hugging Face dataset {self.location} ({self.split})"

    def _decode(self, row: int, column: str) -> Image.Image:
        """The RGB image in ``column`` of ``row``, stored as bytes or as a file path."""
        value = self._table[row][column]
        name = f"{self.samples[row][0]} (column '{column}') in {self.location}"
        if not value or not (value.get("bytes") or value.get("path")):
            raise OSError(f"cannot read image {name}: the row holds none")
        return load_rgb(io.BytesIO(value["bytes"]) if value.get("bytes") else Path(value["path"]), name)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | Image.Image, int]:
        image = self._decode(index, self.image_column)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]

    def object_masks(self, rows: Sequence[int]) -> ObjectMasks | None:
        """The ``mask`` image column, where the dataset has one."""
        if self.mask_column is None:
            return None
        return ObjectMasks(f"the '{MASK_COLUMN}' column of {self.origin}",
                           lambda row, _: np.asarray(self._decode(row, MASK_COLUMN).convert("L")) >= 128)
