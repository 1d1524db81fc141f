"""Which samples: a seeded fraction of a dataset's rows, checked row indexes, and training samples whose augmentation
is a function of (seed, epoch, index) alone (the same batches for any number of processes or loader workers, and a
resumed run replays exactly what an uninterrupted one drew)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from utils.runtime.seeding import derived_seed


def subset_indices(n: int, fraction: float, seed: int = 0) -> list[int]:
    """A seeded random ``fraction`` of ``range(n)`` (at least one index), in increasing order."""
    if not 0 < fraction <= 1:
        raise ValueError(f"--fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return list(range(n))
    count = max(1, round(n * fraction))
    return sorted(np.random.default_rng(seed).choice(n, count, replace=False).tolist())


def check_indexes(indexes: Sequence[int], n: int) -> None:
    """Raise if any index is not a valid row of a dataset of size ``n``."""
    for index in indexes:
        if not 0 <= index < n:
            raise ValueError(f"--indexes: index {index} is out of range for a dataset of {n} images")


class EpochSeededDataset(Dataset):
    """Draws each sample's augmentation from a generator seeded by (seed, epoch, index).

    Items are asked for as ``(epoch, index)`` pairs (:class:`EpochIndexSampler`), so the augmented batch a step
    sees does not depend on the number of processes or loader workers, and a resumed run replays exactly the
    augmentations of an uninterrupted one.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]):
        epoch, index = item
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived_seed(self.seed, epoch, index))
            return self.dataset[index]


class EpochIndexSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` for each index of ``sampler``, built in the main process.

    The epoch must travel with the indices: persistent loader workers hold their own copy of the dataset, which
    never sees an epoch set in the main process after they started.
    """

    def __init__(self, sampler: DistributedSampler) -> None:
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, index) for index in self.sampler)
