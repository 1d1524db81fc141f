"""The dataset behind the data flags. A :class:`DataSource` (``--dataset`` kind, ``--root_data``, ``--path_list``)
goes through one table, :data:`FORMATS`: the first format of its kind that accepts it builds the dataset, with the
transforms of a :class:`~.transforms.Preprocessing`. A new format is its module (a subclass of
:class:`~.base.ImageDataset`) plus one entry here; docs/data-formats.md says what each format supports."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from .base import ImageDataset, PathLike
from .builtin import ensure_builtin_dataset
from .builtin_voc import ensure_builtin_voc
from .folder import ImageFolderDataset
from .generated import IMAGES_DIRNAME
from .hf import HFDataset, default_split
from .imagenet import TRAIN_DIRNAME, VAL_DIRNAME, ImageNetDataset, is_imagenet_layout
from .lists import ListDataset, open_list, training_lists
from .shards import ShardDataset
from .transforms import Preprocessing
from .voc import VOCDataset


@dataclass(frozen=True)
class DataSource:
    """Where a dataset's images and labels are.

    Args:
        kind: ``--dataset``, one of :data:`DATASET_KINDS`: ``imagenet`` (single-label files), ``voc``
            (multi-label), ``wds`` (WebDataset tar shards) or ``hf`` (a Hugging Face dataset saved on disk).
        root: ``--root_data``: an image root, an image folder, ImageNet's layout, a VOCdevkit year folder, a folder
            of tar shards or a saved Hugging Face dataset; None: the kind's built-in generated set (made from
            ``builtin_seed`` on first use).
        listing: ``--path_list``: a list file, a VOCdevkit's image set, the shards' sub-folder or glob pattern, a
            Hugging Face split; None: the format's default.
        builtin_seed: the seed of the built-in set.
    """

    kind: str = "imagenet"
    root: Optional[PathLike] = None
    listing: Optional[PathLike] = None
    builtin_seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in DATASET_KINDS:
            raise ValueError(f"--dataset {self.kind}: expected one of {', '.join(DATASET_KINDS)}")


Builder = Callable[[DataSource, Callable, bool, Optional[int]], ImageDataset]
Splitter = Callable[[DataSource, Optional[PathLike], Optional[PathLike]], tuple[DataSource, Optional[DataSource]]]


@dataclass(frozen=True)
class DatasetFormat:
    """One row of the factory's table.

    Args:
        name: the format's name, for messages.
        kind: the ``--dataset`` kind it serves.
        dataset: its dataset class, which answers the kind's task.
        accepts: whether a source of ``kind`` is in this format (formats are tried in table order).
        build: ``(source, transform, train, num_classes) -> dataset``.
        split: ``(source, val_root, val_list) -> (training source, validation source or None)``, see
            :func:`training_sources`.
    """

    name: str
    kind: str
    dataset: type[ImageDataset]
    accepts: Callable[[DataSource], bool]
    build: Builder
    split: Splitter


def _builtin(source: DataSource, transform: Callable, train: bool, num_classes: Optional[int]) -> ListDataset:
    root = ensure_builtin_dataset(seed=source.builtin_seed)
    return open_list(root / IMAGES_DIRNAME, root / ("train.csv" if train else "val.csv"), transform, num_classes)


def _list(source: DataSource, transform: Callable, train: bool, num_classes: Optional[int]) -> ListDataset:
    return open_list(source.root, source.listing, transform, num_classes)


def _folder(source: DataSource, transform: Callable, train: bool, num_classes: Optional[int]) -> ImageFolderDataset:
    return ImageFolderDataset(source.root, transform, num_classes)


def _voc(source: DataSource, transform: Callable, train: bool, num_classes: Optional[int]) -> VOCDataset:
    return VOCDataset(source.root, source.listing or ("train" if train else "val"), transform, num_classes)


def _builtin_voc(source: DataSource, transform: Callable, train: bool, num_classes: Optional[int]) -> VOCDataset:
    return _voc(replace(source, root=ensure_builtin_voc(seed=source.builtin_seed)), transform, train, num_classes)


def _needs_root(source: DataSource) -> Path:
    if source.root is None:
        raise ValueError(f"--dataset {source.kind} needs --root_data (no built-in set in this format)")
    return Path(source.root)


def _named_folder(root: Path, train: bool) -> Optional[str]:
    """The root's ``train/`` (training) or ``val/`` (evaluation) sub-folder, where it has one."""
    name = TRAIN_DIRNAME if train else VAL_DIRNAME
    return name if (root / name).is_dir() else None


def _imagenet(source: DataSource, transform: Callable, train: bool, num_classes: Optional[int]) -> ImageNetDataset:
    return ImageNetDataset(source.root, source.listing or (TRAIN_DIRNAME if train else VAL_DIRNAME), transform,
                           num_classes)


def _wds(source: DataSource, transform: Callable, train: bool, num_classes: Optional[int]) -> ShardDataset:
    root = _needs_root(source)
    return ShardDataset(root, source.listing or _named_folder(root, train), transform, num_classes)


def _hf(source: DataSource, transform: Callable, train: bool, num_classes: Optional[int]) -> HFDataset:
    return HFDataset(_needs_root(source), source.listing, transform, num_classes, train)


def _own_split(source: DataSource, val_root: Optional[PathLike], val_list: Optional[PathLike]
               ) -> tuple[DataSource, DataSource]:
    """A format with a validation split of its own (the built-in sets' val, a devkit's val image set)."""
    return source, replace(source, root=val_root or source.root, listing=val_list)


def _listed_split(source: DataSource, val_root: Optional[PathLike], val_list: Optional[PathLike]
                  ) -> tuple[DataSource, Optional[DataSource]]:
    """A format whose validation data is only what ``--val_list`` names."""
    return source, None if val_list is None else replace(source, root=val_root or source.root, listing=val_list)


def _named_splits(default: Callable[[Path, bool], Optional[str]]) -> Splitter:
    """A format whose root may hold named training and validation splits (``default(root, train)``: the name, or
    None), taken where ``--path_list`` and ``--val_list`` leave the choice to the format. Both sources name their
    split, so that the training source stays the training data when read for evaluation (the held-out part)."""
    def split(source: DataSource, val_root: Optional[PathLike], val_list: Optional[PathLike]
              ) -> tuple[DataSource, Optional[DataSource]]:
        root = _needs_root(source)
        own_val = default(root, False) if source.listing is None and val_list is None else None
        training = replace(source, listing=source.listing or default(root, True))
        if own_val is not None:
            return training, replace(source, root=val_root or source.root, listing=own_val)
        return _listed_split(training, val_root, val_list)
    return split


def _list_split(source: DataSource, val_root: Optional[PathLike], val_list: Optional[PathLike]
                ) -> tuple[DataSource, Optional[DataSource]]:
    """A list file (or a folder holding train.csv) and the validation list beside it."""
    train_list, beside = training_lists(source.root, source.listing)
    return _listed_split(replace(source, listing=train_list), val_root, val_list or beside)


FORMATS: tuple[DatasetFormat, ...] = (
    DatasetFormat("built-in shapes", "imagenet", ListDataset, lambda s: s.root is None, _builtin, _own_split),
    DatasetFormat("ImageNet layout", "imagenet", ImageNetDataset,
                  lambda s: is_imagenet_layout(s.root) and s.listing in (None, TRAIN_DIRNAME, VAL_DIRNAME), _imagenet,
                  _named_splits(_named_folder)),
    DatasetFormat("list file", "imagenet", ListDataset, lambda s: s.listing is not None, _list, _list_split),
    DatasetFormat("image folder", "imagenet", ImageFolderDataset, lambda s: True, _folder, _listed_split),
    DatasetFormat("built-in multi-label shapes", "voc", VOCDataset, lambda s: s.root is None, _builtin_voc,
                  _own_split),
    DatasetFormat("VOCdevkit", "voc", VOCDataset, lambda s: True, _voc, _own_split),
    DatasetFormat("WebDataset tar shards", "wds", ShardDataset, lambda s: True, _wds, _named_splits(_named_folder)),
    DatasetFormat("Hugging Face dataset on disk", "hf", HFDataset, lambda s: True, _hf, _named_splits(default_split)),
)
DATASET_KINDS: tuple[str, ...] = tuple(dict.fromkeys(entry.kind for entry in FORMATS))


def dataset_format(source: DataSource) -> DatasetFormat:
    """The table's first format of ``source.kind`` that accepts ``source``."""
    for entry in FORMATS:
        if entry.kind == source.kind and entry.accepts(source):
            return entry
    raise ValueError(f"--dataset {source.kind}: no data format takes --root_data {source.root} "
                     f"--path_list {source.listing}")


def kind_task(kind: str) -> str:
    """The task of ``--dataset`` ``kind``'s data (:data:`~.base.SINGLE_LABEL` or :data:`~.base.MULTI_LABEL`)."""
    return dataset_format(DataSource(kind)).dataset.task


def default_kind(task: Optional[str]) -> str:
    """The ``--dataset`` kind of data of ``task``, the first kind where ``task`` is None."""
    return next((kind for kind in DATASET_KINDS if kind_task(kind) == task), DATASET_KINDS[0])


def build_dataset(source: DataSource, preprocessing: Preprocessing, train: bool,
                  num_classes: Optional[int] = None) -> ImageDataset:
    """The dataset of ``source``, its images transformed by ``preprocessing`` (the training augmentation where
    ``train``, else the evaluation geometry), its labels checked against ``num_classes`` (``--classes``) where
    given.

    Kind ``imagenet`` (single-label):

    * ``root`` None: the built-in dataset (generated on first use), its train.csv or val.csv;
    * ``listing`` given: a list file, resolved from the working directory, else under ``root``;
      class names come from a ``classes.txt`` next to it when there is one;
    * ``root`` holding ImageNet's ``train/`` or ``val/`` folder: that layout (:class:`~.imagenet.ImageNetDataset`),
      ``listing`` None or the split (``train``, ``val``);
    * otherwise ``root`` must hold one sub-folder per class.

    Kind ``wds``: the tar shards of ``root`` (:class:`~.shards.ShardDataset`); kind ``hf``: the Hugging Face dataset
    saved at ``root`` (:class:`~.hf.HFDataset`); ``listing`` picks the shards or the split.

    Kind ``voc`` (multi-label, :class:`~.voc.VOCDataset`): ``root`` a VOCdevkit year folder (None: the built-in
    multi-label set), ``listing`` an image set (default: train, or val when not ``train``), a multi-label list file
    or a JSON list.

    Example::

        val = build_dataset(DataSource("voc", "VOCdevkit/VOC2012", "val"), Preprocessing(224), train=False)
    """
    transform = preprocessing.transform(train)
    return dataset_format(source).build(source, transform, train, num_classes)


def training_sources(source: DataSource, val_root: Optional[PathLike] = None, val_list: Optional[PathLike] = None
                     ) -> tuple[DataSource, Optional[DataSource]]:
    """The training data of ``source`` and its validation data: ``val_list`` (``--val_list``, images under
    ``val_root``, default ``source.root``) where given, else the format's own (the built-in sets' and a devkit's val
    split, a ``val.csv`` or ``val.txt`` beside the training list); None where there is none, so that part of the
    training images is held out. A ``listing`` that is a folder holding ``train.csv`` names its training list."""
    return dataset_format(source).split(source, val_root, val_list)
