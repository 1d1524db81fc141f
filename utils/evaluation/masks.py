"""Object masks, where the data has them: ``<root>/masks/<relative path>`` beside ``<root>/images`` (the layout of
the built-in dataset), put through the same evaluation geometry as the images."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch

from utils.data import IMAGES_DIRNAME, MASKS_DIRNAME, load_mask, transform_mask


def mask_root(dataset, rows: Sequence[int]) -> Optional[Path]:
    """The dataset root holding ``masks/`` beside ``images/`` when every evaluated row has a mask, else None."""
    images = Path(dataset.root)
    root = images.parent
    if images.name != IMAGES_DIRNAME or not (root / MASKS_DIRNAME).is_dir():
        return None
    if not all((root / MASKS_DIRNAME / dataset.samples[i][0]).is_file() for i in rows):
        return None
    return root


def load_masks(root: Path, dataset, rows: Sequence[int], imsize: int, crop_pct: float, squash: bool
               ) -> torch.Tensor:
    """(N, imsize, imsize) bool masks of ``rows``, aligned pixel for pixel with the evaluated images."""
    return torch.stack([transform_mask(load_mask(root, dataset.samples[i][0]), imsize, crop_pct, squash)
                        for i in rows])
