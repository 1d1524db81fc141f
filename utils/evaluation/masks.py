"""Object masks, where the data has them, put through the same evaluation geometry as the images: the masks of a
generated dataset (``<root>/masks/<relative path>`` beside ``<root>/images``, one object per image), or the boxes
of a VOCdevkit's annotations (one mask per image and class: the union of the class's boxes)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from utils.data import ANNOTATIONS_DIRNAME, IMAGES_DIRNAME, MASKS_DIRNAME, VOCDataset, load_mask, transform_mask


@dataclass(frozen=True)
class ObjectMasks:
    """Where the evaluated images' masks come from (``origin``, recorded in reports) and the mask of a (dataset row,
    class) pair at the image's own resolution."""

    origin: str
    mask: Callable[[int, int], np.ndarray]

    def load(self, rows: Sequence[int], classes: Sequence[int], imsize: int, crop_pct: float, squash: bool
             ) -> torch.Tensor:
        """(N, imsize, imsize) bool masks of the pairs (rows[i], classes[i]), aligned pixel for pixel with the
        evaluated images."""
        return torch.stack([transform_mask(self.mask(row, label), imsize, crop_pct, squash)
                            for row, label in zip(rows, classes)])


def mask_root(dataset, rows: Sequence[int]) -> Optional[Path]:
    """The dataset root holding ``masks/`` beside ``images/`` when every evaluated row has a mask, else None."""
    images = Path(dataset.root)
    root = images.parent
    if images.name != IMAGES_DIRNAME or not (root / MASKS_DIRNAME).is_dir():
        return None
    if not all((root / MASKS_DIRNAME / dataset.samples[i][0]).is_file() for i in rows):
        return None
    return root


def object_masks(dataset, rows: Sequence[int]) -> Optional[ObjectMasks]:
    """The masks of ``rows`` when every one of them has its mask (or its boxes), else None."""
    if isinstance(dataset, VOCDataset):
        if not dataset.has_boxes(rows):
            return None
        return ObjectMasks(f"boxes of {dataset.devkit / ANNOTATIONS_DIRNAME}", dataset.class_mask)
    root = mask_root(dataset, rows)
    if root is None:
        return None
    return ObjectMasks(str(root / MASKS_DIRNAME), lambda row, _: load_mask(root, dataset.samples[row][0]))
