"""Object masks, where the data has them, at each image's own resolution; :meth:`ObjectMasks.load` puts them through
the evaluation geometry of the images. A dataset answers its own (:meth:`~.base.ImageDataset.object_masks`): mask
files beside the images (:func:`mask_files`, the built-in shapes' ``masks/``) or a VOCdevkit's boxes."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .generated import IMAGES_DIRNAME, MASKS_DIRNAME, load_mask
from .transforms import transform_mask


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


def mask_files(images: str | os.PathLike, samples: Sequence[tuple[str, object]], rows: Sequence[int]
               ) -> ObjectMasks | None:
    """The masks of the generated layout, ``<root>/masks/<relative path>`` beside ``<root>/images`` (one object per
    image, whatever the class), when ``images`` is such an ``images/`` folder and every row of ``rows`` has its
    mask file; else None."""
    images = Path(images)
    root = images.parent
    if images.name != IMAGES_DIRNAME or not (root / MASKS_DIRNAME).is_dir():
        return None
    if not all((root / MASKS_DIRNAME / samples[row][0]).is_file() for row in rows):
        return None
    return ObjectMasks(str(root / MASKS_DIRNAME), lambda row, _: load_mask(root, samples[row][0]))
