"""What every dataset format shares: the :class:`ImageDataset` base ((image, label) pairs of image files under a
root, the task, the object masks), image decoding and the checks a format runs on construction."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from .masks import ObjectMasks, mask_files

PathLike = str | os.PathLike
SINGLE_LABEL, MULTI_LABEL = "single-label", "multi-label"


def require_dir(root: PathLike, what: str) -> Path:
    """``root`` as a Path; one line naming ``what`` when it is not a folder."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{what} not found or not a directory: {root}")
    return root


def check_images_exist(root: Path, rel_paths: Sequence[str], source: str) -> None:
    """Raise, naming ``source`` (the listing) and the first missing file, unless every ``root / rel_path`` is a
    file."""
    missing = [p for p in rel_paths if not (root / p).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(rel_paths)} images listed in {source} are missing under {root}; "
            f"first missing: {root / missing[0]}")


def load_rgb(path: Path) -> Image.Image:
    """The fully decoded RGB image of ``path``; a truncated or unreadable file is one line naming it."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")  # convert() forces a full decode, so truncation fails here
    except (OSError, ValueError) as err:  # PIL.UnidentifiedImageError is an OSError
        raise OSError(f"cannot read image {path}: {err}") from err


class ImageDataset(Dataset):
    """(image, label) pairs from ``root / relative_path`` for each ``(relative_path, label)`` in ``samples``.

    Attributes: ``root``, ``samples``, ``targets``, ``classes`` (class names or None), ``classes_origin`` (where the
    names come from, for messages), ``transform``, and ``task`` (:data:`SINGLE_LABEL` or :data:`MULTI_LABEL`).
    A format subclasses it and answers for itself where its images (:attr:`origin`) and masks
    (:meth:`object_masks`) come from and whether its labels fit a class count (:meth:`check_labels`).
    """

    task = SINGLE_LABEL

    def __init__(
            self,
            root: Path,
            samples: list[tuple[str, int]],
            transform: Callable | None,
            classes: Sequence[str] | None,
            classes_origin: str | None = None,
    ) -> None:
        self.root = root
        self.samples = samples
        self.targets = [label for _, label in samples]
        self.classes = list(classes) if classes is not None else None
        self.classes_origin = classes_origin
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | Image.Image, int]:
        rel_path, label = self.samples[index]
        image = load_rgb(self.root / rel_path)
        if self.transform is not None:
            image = self.transform(image)
        return image, label

    @property
    def origin(self) -> str:
        """Where the images come from, for logs."""
        return str(self.root)

    def object_masks(self, rows: Sequence[int]) -> ObjectMasks | None:
        """The object masks of ``rows`` when every one of them has its mask, else None. Here: mask files beside the
        images (:func:`~.masks.mask_files`, the generated layout)."""
        return mask_files(self.root, self.samples, rows)

    def check_labels(self, num_classes: int, classes_origin: str) -> None:
        """Raise (one line naming the label's file) where a label falls outside ``num_classes`` classes, which come
        from ``classes_origin``. Here nothing: a format whose labels are not in range by construction overrides
        it."""
