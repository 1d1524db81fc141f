"""The training and validation data of a run: the built-in set by default, else ``--root_data`` and the lists
(``--dataset voc``: a VOCdevkit folder and its image sets, or the built-in multi-label set); the model's class
count, every label checked against it before training starts."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import Subset

from utils.data import (
    CLASSES_FILENAME,
    EpochSeededDataset,
    ImageDataset,
    build_dataset,
    subset_indices,
    training_sources,
)
from utils.runtime.distributed import shard_indices

from .settings import TrainingDataSettings

FIRST_VALIDATION_IMAGES = 16  # decoded before training starts: well under a second at ImageNet sizes


@dataclass
class TrainingData:
    train: EpochSeededDataset
    val: Optional[Subset]
    num_classes: int
    class_names: Optional[list[str]]
    validation: str  # where the validation images come from, for the log
    task: str  # single-label or multi-label


def build_training_data(settings: TrainingDataSettings, classes: Optional[int], seed: int, mean, std, rank: int,
                        world_size: int) -> TrainingData:
    """Train and validation datasets, the model's class count (``classes``, else the data's) and the class names:
    the built-in set by default, else ``--root_data``/``--path_list``.

    Without a validation list, ``--val_split`` of the training list is held out (seeded by ``seed``). Every label
    of both lists is checked against the class count here, and every listed image file for existence and size (one
    stat each), so a bad one names its file and line before training starts; the first validation images are
    decoded too. ``--dataset voc``: ``--path_list`` / ``--val_list`` name image sets (default train / val) or
    multi-label lists, checked against the devkit's classes when read.
    """
    root = settings.source.root
    if root is not None and not Path(root).is_dir():
        raise FileNotFoundError(f"--root_data {root} is not a folder")
    preprocessing = settings.preprocessing(mean, std)
    train_source, val_source = training_sources(settings.source, settings.val_root, settings.val_list)
    train_set = build_dataset(train_source, preprocessing, train=True, num_classes=classes)
    if len(train_set) == 0:
        raise ValueError(f"--path_list {train_source.listing} lists no images")
    num_classes, classes_origin = _count_classes(classes, train_set)
    if val_source is not None:
        val_set = build_dataset(val_source, preprocessing, train=False, num_classes=classes)
        train_indices, val_indices = list(range(len(train_set))), list(range(len(val_set)))
        validation = f"validation: {val_set.origin}"
    else:
        val_set = build_dataset(train_source, preprocessing, train=False, num_classes=classes)
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(seed)).tolist()
        held_out = int(round(len(order) * settings.val_split))
        val_indices, train_indices = sorted(order[:held_out]), sorted(order[held_out:])
        source = train_source.listing or root
        validation = (f"validation: {held_out} images of {source} held out (--val_split {settings.val_split}; no "
                      f"--val_list, no val.csv or val.txt beside the training list)") if held_out else \
            "validation: none (--val_split 0 and no validation list)"
    for dataset in (train_set, val_set):
        dataset.check_labels(num_classes, classes_origin)
    train_indices = [train_indices[i] for i in subset_indices(len(train_indices), settings.fraction, seed)]
    train = EpochSeededDataset(Subset(train_set, train_indices), seed)
    # Each rank validates its own shard, without the padding a DistributedSampler would add.
    val = Subset(val_set, shard_indices(val_indices, rank, world_size)) if val_indices else None
    if val is not None:
        # every listed file was stat-ed when its dataset was built; decoding the first validation images as well
        # finds what spoils a whole validation set (an unreadable format, a transform that fails) now, not after
        # the first training epoch
        for position in range(min(len(val), FIRST_VALIDATION_IMAGES)):
            val[position]
    return TrainingData(train, val, num_classes, train_set.classes, validation, train_set.task)


def _count_classes(classes: Optional[int], train_set: ImageDataset) -> tuple[int, str]:
    """The model's class count, and where it comes from (for error messages)."""
    if classes:
        return classes, f"--classes {classes}"
    if train_set.classes:
        return len(train_set.classes), f"the {len(train_set.classes)} classes of {train_set.classes_origin}"
    labels = set(train_set.targets)
    count = max(labels) + 1
    empty = sorted(set(range(count)) - labels)
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
        source = getattr(train_set, "list_file", None) or train_set.origin  # a list names its file, others their data
        raise ValueError(f"{source}: no sample has label {shown}, so classes 0..{count - 1} would "
                         f"include classes without data; pass --classes {count} if that is meant (or name the "
                         f"classes in a {CLASSES_FILENAME} beside the list)")
    return count, f"the {count} classes of the training labels (--classes sets more)"

