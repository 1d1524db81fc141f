"""Seeds: one per (run seed, epoch, rank) and one per (run seed, epoch, sample), from numpy's SeedSequence, so
that no two of them collide whatever the number of ranks, epochs or samples."""
from __future__ import annotations

import random

import numpy as np
import torch


def derived_seed(*entropy: int) -> int:
    """A 63-bit seed derived from integers (order matters); distinct inputs give independent seeds."""
    return int(np.random.SeedSequence([int(value) for value in entropy]).generate_state(1, np.uint64)[0] >> 1)


def seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
