"""The training and validation data of a run: the built-in set by default, else ``--root_data`` and the lists
(``--dataset voc``: a VOCdevkit folder and its image sets, or the built-in multi-label set); the model's class
count, every label checked against it before training starts."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import Subset

from utils.data import (
    CLASSES_FILENAME,
    EpochSeededDataset,
    ImageDataset,
    ListDataset,
    VOCDataset,
    build_dataset,
    subset_indices,
)
from utils.runtime.distributed import shard_indices

_LIST_NAMES = ("train.csv", "train.txt")
_VAL_LIST_NAMES = ("val.csv", "val.txt")


def _find_list(folder: Path, names: tuple[str, ...]) -> Optional[Path]:
    return next((folder / name for name in names if (folder / name).is_file()), None)


def _resolve_lists(args: argparse.Namespace) -> tuple[Optional[Path], Optional[Path]]:
    """The training and validation lists: ``--path_list`` names a list file (found in the working directory,
    else under ``--root_data``) or a folder holding ``train.csv``; without ``--val_list``, a ``val.csv`` or
    ``val.txt`` beside it is the validation list."""
    if args.path_list is None:
        return None, args.val_list
    path = Path(args.path_list)
    if path.is_dir():
        return _find_list(path, _LIST_NAMES), args.val_list or _find_list(path, _VAL_LIST_NAMES)
    if not path.is_file() and args.root_data is not None and (Path(args.root_data) / path).is_file():
        path = Path(args.root_data) / path
    beside = _find_list(path.parent, _VAL_LIST_NAMES) if path.is_file() else None
    if beside is not None and beside.resolve() == path.resolve():
        beside = None
    return path, args.val_list or beside


@dataclass
class TrainingData:
    train: EpochSeededDataset
    val: Optional[Subset]
    num_classes: int
    class_names: Optional[list[str]]
    validation: str  # where the validation images come from, for the log
    task: str  # single-label or multi-label


def build_training_data(args: argparse.Namespace, mean, std, rank: int, world_size: int) -> TrainingData:
    """Train and validation datasets, the model's class count and the class names: the built-in set by default,
    else ``--root_data``/``--path_list``.

    Without a validation list, ``--val_split`` of the training list is held out (seeded). Every label of both
    lists is checked against the class count here, so a bad one names its file and line before training starts.
    ``--dataset voc``: ``--path_list`` / ``--val_list`` name image sets (default train / val) or multi-label lists,
    checked against the devkit's classes when read.
    """
    if args.root_data is not None and not Path(args.root_data).is_dir():
        raise FileNotFoundError(f"--root_data {args.root_data} is not a folder")
    common = dict(imsize=args.imsize, mean=mean, std=std, num_classes=args.classes, dataset=args.dataset)
    train_list, val_list = _resolve_lists(args) if args.dataset != "voc" else (args.path_list, args.val_list)
    train_set = build_dataset(args.root_data, train_list, train=True, scale=tuple(args.crop_scale), **common)
    if len(train_set) == 0:
        raise ValueError(f"--path_list {train_list} lists no images")
    num_classes, classes_origin = _count_classes(args, train_set)
    if isinstance(train_set, VOCDataset):
        val_set = build_dataset(args.val_root or args.root_data, val_list, train=False, **common)
        train_indices, val_indices = list(range(len(train_set))), list(range(len(val_set)))
        validation = f"validation: {val_set.list_file}"
    elif args.root_data is None or val_list is not None:
        val_root = args.val_root or args.root_data
        val_set = build_dataset(val_root, val_list, train=False, **common)
        train_indices = list(range(len(train_set)))
        val_indices = list(range(len(val_set)))
        validation = f"validation: list {val_set.list_file}" if isinstance(val_set, ListDataset) \
            else f"validation: the image folder {val_set.root}"
    else:
        val_set = build_dataset(args.root_data, train_list, train=False, **common)
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(args.seed)).tolist()
        held_out = int(round(len(order) * args.val_split))
        val_indices, train_indices = sorted(order[:held_out]), sorted(order[held_out:])
        source = train_list or args.root_data
        validation = (f"validation: {held_out} images of {source} held out (--val_split {args.val_split}; no "
                      f"--val_list, no val.csv or val.txt beside the training list)") if held_out else \
            "validation: none (--val_split 0 and no validation list)"
    for dataset in (train_set, val_set):
        _check_labels(dataset, num_classes, classes_origin)
    train_indices = [train_indices[i] for i in subset_indices(len(train_indices), args.fraction, args.seed)]
    train = EpochSeededDataset(Subset(train_set, train_indices), args.seed)
    # Each rank validates its own shard, without the padding a DistributedSampler would add.
    val = Subset(val_set, shard_indices(val_indices, rank, world_size)) if val_indices else None
    return TrainingData(train, val, num_classes, train_set.classes, validation, train_set.task)


def _count_classes(args: argparse.Namespace, train_set: ImageDataset) -> tuple[int, str]:
    """The model's class count, and where it comes from (for error messages)."""
    if args.classes:
        return args.classes, f"--classes {args.classes}"
    if train_set.classes:
        origin = train_set.list_file.parent / CLASSES_FILENAME if isinstance(train_set, ListDataset) \
            else f"the class folders of {train_set.root}"
        return len(train_set.classes), f"the {len(train_set.classes)} classes of {origin}"
    labels = set(train_set.targets)
    count = max(labels) + 1
    empty = sorted(set(range(count)) - labels)
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
        raise ValueError(f"{train_set.list_file}: no sample has label {shown}, so classes 0..{count - 1} would "
                         f"include classes without data; pass --classes {count} if that is meant (or name the "
                         f"classes in a {CLASSES_FILENAME} beside the list)")
    return count, f"the {count} classes of the training labels (--classes sets more)"


def _check_labels(dataset: ImageDataset, num_classes: int, classes_origin: str) -> None:
    if not isinstance(dataset, ListDataset):
        return  # image folders label by sub-folder: in range by construction
    for label, line_number in zip(dataset.targets, dataset.line_numbers):
        if label >= num_classes:
            raise ValueError(f"{dataset.list_file}:{line_number}: label {label} is outside [0, {num_classes}) "
                             f"for {classes_origin}")
