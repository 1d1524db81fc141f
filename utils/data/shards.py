"""WebDataset tar shards, read by random access: a sample is the tar members that share a key (``dir/key.jpg`` and
``dir/key.cls``, the key everything before the first dot of the file name), its image one of :data:`IMAGE_EXTENSIONS`,
its class the integer text of ``key.cls``, its object mask an optional ``key.mask.png``. Each shard is indexed once
on construction (member offsets, the classes read then), and an image is read by seeking to its offset: a map-style
dataset, so that the seeded per-sample augmentation, exact resume, row subsets and evaluation shards work as on
loose files. Shards are local ``.tar`` files (uncompressed: a compressed tar has no offsets to seek to). A shard's
index is kept in ``$CASTREAM_DATA/shard_index/`` under the shard's path, size and modification time, so that later
runs (and the other ranks) read one small file per shard instead of every tar header."""
from __future__ import annotations

import contextlib
import hashlib
import io
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from utils.runtime.io import write_npz

from .base import ImageDataset, PathLike, load_rgb, require_dir
from .builtin import generated_data_cache
from .lists import CLASSES_FILENAME, read_class_names
from .masks import ObjectMasks

SHARD_SUFFIX = ".tar"
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "ppm", "bmp", "tif", "tiff")
LABEL_EXTENSION = "cls"
MASK_EXTENSION = "mask.png"


@dataclass(frozen=True)
class Member:
    """Where one tar member's bytes are: ``size`` bytes from ``offset`` of its shard."""

    offset: int
    size: int


@dataclass(frozen=True)
class ShardSample:
    """One sample of a shard: its key, image member, class and mask member."""

    key: str
    image: Member
    label: int
    mask: Optional[Member]


def shard_files(root: PathLike, selection: Optional[str] = None) -> list[Path]:
    """The shards of ``--root_data`` (a folder) and ``--path_list`` (``selection``: a sub-folder
    of the root or a glob pattern under it, e.g. ``train-*.tar``; None: the ``.tar`` files in the root), sorted by
    name; none is one line naming both."""
    root = require_dir(root, f"--root_data (the folder of {SHARD_SUFFIX} shards)")
    if selection is None:
        shards = sorted(root.glob(f"*{SHARD_SUFFIX}"))
    elif (root / selection).is_dir():
        shards = sorted((root / selection).glob(f"*{SHARD_SUFFIX}"))
    else:
        shards = sorted(path for path in root.glob(selection) if path.suffix == SHARD_SUFFIX)
    shards = [path for path in shards if path.is_file()]
    if not shards:
        chosen = "" if selection is None else f" --path_list {selection}"
        raise FileNotFoundError(f"--dataset wds: no {SHARD_SUFFIX} shards in --root_data {root}{chosen}")
    return shards


def _split_name(name: str) -> tuple[str, str]:
    """A member name's (key, extension): WebDataset's rule, the extension everything after the file name's first
    dot, lower-cased."""
    folder, _, base = name.rpartition("/")
    stem, _, extension = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), extension.lower()


def index_shard(path: Path, num_classes: Optional[int] = None) -> list[ShardSample]:
    """The samples of shard ``path`` in member order, their classes read
    and checked (against ``num_classes`` where given); a member that breaks the format is one line naming the shard
    and the key."""
    members: dict[str, dict[str, tuple[tarfile.TarInfo, Member]]] = {}
    labels: dict[str, int] = {}
    try:
        with tarfile.open(path, "r:") as archive:
            for info in archive:
                if not info.isfile():
                    continue
                key, extension = _split_name(info.name)
                members.setdefault(key, {})[extension] = (info, Member(info.offset_data, info.size))
                if extension == LABEL_EXTENSION:
                    text = archive.extractfile(info).read().decode("utf-8", "replace").strip()
                    labels[key] = _parse_class(path, key, text, num_classes)
    except (tarfile.TarError, EOFError) as error:
        raise OSError(f"{path}: not a readable uncompressed tar shard ({error})") from None
    samples = []
    for key, parts in members.items():
        image = next((extension for extension in IMAGE_EXTENSIONS if extension in parts), None)
        if image is None and key not in labels:
            continue  # neither image nor class: another kind of entry (e.g. the shard's own metadata)
        if image is None:
            raise ValueError(f"{path}: sample {key} has a .{LABEL_EXTENSION} but no image "
                             f"(.{', .'.join(IMAGE_EXTENSIONS)})")
        if key not in labels:
            raise ValueError(f"{path}: sample {key} has no class (no {key}.{LABEL_EXTENSION})")
        mask = parts.get(MASK_EXTENSION)
        samples.append(ShardSample(key, parts[image][1], labels[key], mask[1] if mask else None))
    return samples


INDEX_FOLDER = "shard_index"
_INDEX_VERSION = 1  # a new layout of the cached index files gets a new number, so old files are not misread


def _index_file(path: Path) -> Path:
    """The cached index of shard ``path`` as it is now (another size or modification time: another file)."""
    status = path.stat()
    identity = f"{_INDEX_VERSION}|{path.resolve()}|{status.st_size}|{status.st_mtime_ns}"
    return generated_data_cache() / INDEX_FOLDER / f"{hashlib.sha256(identity.encode()).hexdigest()[:32]}.npz"


def cached_index(path: Path, num_classes: Optional[int] = None) -> list[ShardSample]:
    """:func:`index_shard`, read from its cache file where one was written for the shard as it is now, else built
    and cached (best effort: an unwritable cache only costs the next run the indexing again)."""
    cache = _index_file(path)
    try:
        with np.load(cache, allow_pickle=False) as saved:
            keys, rows = saved["keys"].tolist(), saved["rows"]
    except (OSError, ValueError, KeyError):
        samples = index_shard(path, num_classes)
        rows = np.asarray([(s.image.offset, s.image.size, s.label, *((s.mask.offset, s.mask.size) if s.mask else
                                                                       (-1, -1))) for s in samples],
                          dtype=np.int64).reshape(len(samples), 5)
        with contextlib.suppress(OSError):
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_npz(cache, {"keys": np.asarray([s.key for s in samples], dtype=str), "rows": rows})
        return samples
    samples = []
    for key, (offset, size, label, mask_offset, mask_size) in zip(keys, rows.tolist()):
        _check_class(path, key, label, num_classes)
        samples.append(ShardSample(key, Member(offset, size), label,
                                   Member(mask_offset, mask_size) if mask_offset >= 0 else None))
    return samples


def _parse_class(path: Path, key: str, text: str, num_classes: Optional[int]) -> int:
    try:
        label = int(text)
    except ValueError:
        raise ValueError(f"{path}: {key}.{LABEL_EXTENSION} holds {text[:40]!r}, expected an integer class") from None
    _check_class(path, key, label, num_classes)
    return label


def _check_class(path: Path, key: str, label: int, num_classes: Optional[int], origin: Optional[str] = None) -> None:
    """One line naming the shard and the key where ``label`` is negative or not below ``num_classes`` (which
    ``origin`` sets: ``--classes`` unless named)."""
    if label < 0 or (num_classes is not None and label >= num_classes):
        raise ValueError(f"{path}: {key}.{LABEL_EXTENSION}: class {label} is outside [0, {num_classes}) for "
                         f"{origin or f'--classes {num_classes}'}" if label >= 0 else
                         f"{path}: {key}.{LABEL_EXTENSION}: class {label} is negative")


def read_member(path: Path, member: Member) -> bytes:
    """The bytes of ``member`` of shard ``path``; a file opened per read, so that forked loader workers share no
    file position."""
    with open(path, "rb") as file:
        file.seek(member.offset)
        data = file.read(member.size)
    if len(data) != member.size:
        raise OSError(f"{path}: truncated, {member.size} bytes expected at offset {member.offset}")
    return data


class ShardDataset(ImageDataset):
    """Single-label samples of WebDataset tar shards (:func:`shard_files` of ``root`` and ``selection``), read by
    random access. A sample's path is ``<shard>:<key>``, the shard relative to ``root``; class names come from a
    ``classes.txt`` in ``root`` where there is one. The index is one int64 row per sample (shard, image offset and
    size, mask offset and size or -1), so that ImageNet's 1.28M samples cost tens of MB in each loader worker."""

    def __init__(self, root: PathLike, selection: Optional[str] = None, transform: Callable | None = None,
                 num_classes: int | None = None) -> None:
        self.shards = shard_files(root, selection)
        folder = Path(root)
        self.selection = selection
        self.shard_names = [shard.relative_to(folder).as_posix() for shard in self.shards]
        samples, where = [], []
        for number, shard in enumerate(self.shards):
            for item in cached_index(shard, num_classes):
                samples.append((f"{self.shard_names[number]}:{item.key}", item.label))
                mask = item.mask or Member(-1, -1)
                where.append((number, item.image.offset, item.image.size, mask.offset, mask.size))
        if not samples:
            raise ValueError(f"--dataset wds: the {len(self.shards)} shards of {folder} hold no samples "
                             f"(an image and a .{LABEL_EXTENSION} per key)")
        self.where = np.asarray(where, dtype=np.int64)
        classes_file = folder / CLASSES_FILENAME
        classes = read_class_names(classes_file) if classes_file.is_file() else None
        super().__init__(folder, samples, transform, classes, str(classes_file) if classes else None)

    @property
    def origin(self) -> str:
        return f"{len(self.shards)} tar shards in {self.root}"

    def locate(self, row: int) -> tuple[Path, str]:
        """The shard and the key of dataset row ``row``."""
        shard = int(self.where[row, 0])
        return self.shards[shard], self.samples[row][0][len(self.shard_names[shard]) + 1:]

    def __getitem__(self, index: int) -> tuple[torch.Tensor | Image.Image, int]:
        shard, offset, size = (int(value) for value in self.where[index, :3])
        path, key = self.locate(index)
        image = load_rgb(io.BytesIO(read_member(path, Member(offset, size))), f"{path}:{key}")
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]

    def object_masks(self, rows: Sequence[int]) -> ObjectMasks | None:
        """The ``key.mask.png`` members of ``rows`` where every one has its mask, else None."""
        if not all(self.where[row, 3] >= 0 for row in rows):
            return None
        return ObjectMasks(f"the .{MASK_EXTENSION} members of {self.origin}", lambda row, _: self._mask(row))

    def _mask(self, row: int) -> np.ndarray:
        shard, offset, size = (int(value) for value in self.where[row, [0, 3, 4]])
        try:
            with Image.open(io.BytesIO(read_member(self.shards[shard], Member(offset, size)))) as mask:
                return np.asarray(mask.convert("L")) >= 128
        except (OSError, ValueError) as error:
            path, key = self.locate(row)
            raise OSError(f"cannot read mask {path}:{key}.{MASK_EXTENSION}: {error}") from None

    def check_labels(self, num_classes: int, classes_origin: str) -> None:
        for row, label in enumerate(self.targets):
            if label >= num_classes:
                _check_class(*self.locate(row), label, num_classes, classes_origin)
