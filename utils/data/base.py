"""What every dataset format shares: the :class:`ImageDataset` base ((image, label) pairs of image files under a
root, the task, the object masks), image decoding and the checks a format runs on construction."""
from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
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


def check_images_exist(root: Path, rel_paths: Sequence[str], source: str,
                       lines: Sequence[int] | None = None) -> None:
    """Raise, naming ``source`` (the listing, with the row's line where ``lines`` gives them) and the first bad
    file, unless every ``root / rel_path`` is a non-empty file. One ``os.stat`` per file and no decoding, so that a
    large list is checked at start-up: a missing or empty image fails there, not when a loader first reaches it
    (the validation images only after a training epoch)."""
    missing, empty = [], []
    for position, rel_path in enumerate(rel_paths):
        try:
            info = os.stat(root / rel_path)
        except OSError:
            missing.append(position)
            continue
        if not stat.S_ISREG(info.st_mode):
            missing.append(position)
        elif info.st_size == 0:
            empty.append(position)

    def where(position: int) -> str:
        return f"{source}:{lines[position]}" if lines is not None else source

    if missing:
        first = missing[0]
        raise FileNotFoundError(
            f"{len(missing)} of {len(rel_paths)} images listed in {source} are missing under {root}; "
            f"first missing: {root / rel_paths[first]}{f' (line {lines[first]})' if lines is not None else ''}")
    if empty:
        first = empty[0]
        more = f" ({len(empty) - 1} more empty files in the list)" if len(empty) > 1 else ""
        raise ValueError(f"{where(first)}: image {root / rel_paths[first]} is empty (0 bytes){more}")


def _eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit greyscale image (PNG's ``I;16``, or ``I`` holding 16-bit values) as 8-bit ``L``, intensities
    scaled by 255/65535; PIL's own conversion clips every value above 255 to white."""
    values = np.asarray(image, dtype=np.uint32)
    return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), mode="L")


def load_rgb(path: Path | BinaryIO, name: str | None = None) -> Image.Image:
    """The fully decoded RGB image of ``path`` (or of an open file, e.g. a tar member's bytes, called ``name`` in
    messages); a truncated or unreadable file is one line naming it. 16-bit
    greyscale images are scaled to 8 bits; other images of more than 8 bits per channel (32-bit integer or float)
    have no agreed scale and are refused."""
    try:
        with Image.open(path) as image:
            if image.mode.startswith("I;16") or (image.mode == "I" and image.format == "PNG"):
                image = _eight_bit(image)  # a PNG holds at most 16 bits, so its "I" images are 16-bit
            elif image.mode in ("I", "F"):
                raise ValueError(f"{'32-bit integer' if image.mode == 'I' else 'floating-point'} pixels (PIL mode "
                                 f"{image.mode}) have no 8-bit scale; save it with 8 or 16 bits per channel")
            return image.convert("RGB")  # convert() forces a full decode, so truncation fails here
    except (OSError, ValueError) as err:  # PIL.UnidentifiedImageError is an OSError
        raise OSError(f"cannot read image {name or path}: {err}") from err


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
