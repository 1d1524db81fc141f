"""Training and evaluation loops, built from timm's parts (optimizers, schedulers, mixup, losses, EMA)."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional

import torch
import torch.nn as nn
from timm.data import Mixup
from timm.loss import BinaryCrossEntropy, LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torch.utils.data import Dataset, DistributedSampler, Sampler
from tqdm import tqdm

from .distributed import all_reduce_sum

CRITERIA = ("CrossEntropy", "BCELogitsLoss")
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


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
            torch.manual_seed((self.seed * 1_000_003 + epoch) * 10_000_019 + index)
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


def build_criterion(name: str, smoothing: float, mixup_active: bool) -> nn.Module:
    if name not in CRITERIA:
        raise ValueError(f"--criterion {name}: expected one of {', '.join(CRITERIA)}")
    if name == "BCELogitsLoss":
        return BinaryCrossEntropy(smoothing=smoothing)
    if mixup_active:  # mixup already smooths the soft targets it builds
        return SoftTargetCrossEntropy()
    return LabelSmoothingCrossEntropy(smoothing) if smoothing > 0 else nn.CrossEntropyLoss()


def build_mixup(mixup: float, cutmix: float, prob: float, switch_prob: float, smoothing: float,
                num_classes: int) -> Optional[Mixup]:
    if mixup <= 0 and cutmix <= 0:
        return None
    return Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix, prob=prob, switch_prob=switch_prob,
                 label_smoothing=smoothing, num_classes=num_classes)


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    dtype = AMP_DTYPES[amp]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class EpochStats:
    loss: float
    accuracy: float
    images: int
    seconds: float

    @property
    def throughput(self) -> float:
        return self.images / max(self.seconds, 1e-9)


def _reduced(loss_sum: float, correct: float, count: float, device: torch.device) -> tuple[float, float, int]:
    totals = all_reduce_sum(torch.tensor([loss_sum, correct, count], dtype=torch.float64, device=device)).tolist()
    return totals[0] / max(totals[2], 1), 100 * totals[1] / max(totals[2], 1), int(totals[2])


def train_one_epoch(
        model: nn.Module,
        loader: Iterable,
        criterion: nn.Module,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        epoch: int,
        scheduler=None,
        mixup: Optional[Mixup] = None,
        amp: str = "none",
        scaler: Optional[torch.amp.GradScaler] = None,
        clip_grad: Optional[float] = None,
        ema=None,
        channels_last: bool = False,
        progress: bool = True,
        on_step: Optional[Callable[[int, float], None]] = None,
) -> EpochStats:
    """One pass over ``loader``; loss and accuracy are reduced over every process."""
    model.train()
    updates_per_epoch = len(loader)
    loss_sum = correct = count = 0.0
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch + 1} train", disable=not progress, leave=False, dynamic_ncols=True)
    for step, (images, targets) in enumerate(bar):
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        hard_targets = targets
        if mixup is not None:
            images, targets = mixup(images, targets)
        with autocast(device, amp):
            logits = model(images)
        loss = criterion(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if clip_grad:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if clip_grad:
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            optimizer.step()
        if ema is not None:
            ema.update(model, step=epoch * updates_per_epoch + step)
        if scheduler is not None:
            scheduler.step_update(num_updates=epoch * updates_per_epoch + step + 1)
        batch = images.shape[0]
        loss_sum += loss.item() * batch
        correct += (logits.argmax(dim=1) == hard_targets).sum().item()
        count += batch
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
        if on_step is not None:
            on_step(epoch * updates_per_epoch + step, loss.item())
    seconds = time.perf_counter() - start
    loss_mean, accuracy, images_seen = _reduced(loss_sum, correct, count, device)
    return EpochStats(loss_mean, accuracy, images_seen, seconds)


@torch.no_grad()
def evaluate(
        model: nn.Module,
        loader: Iterable,
        device: torch.device,
        amp: str = "none",
        channels_last: bool = False,
        progress: bool = True,
        desc: str = "eval",
) -> EpochStats:
    """Cross-entropy and top-1 accuracy over ``loader`` (each process its own shard, reduced)."""
    model.eval()
    loss_sum = correct = count = 0.0
    start = time.perf_counter()
    for images, targets in tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            logits = model(images).float()
        loss_sum += nn.functional.cross_entropy(logits, targets, reduction="sum").item()
        correct += (logits.argmax(dim=1) == targets).sum().item()
        count += images.shape[0]
    seconds = time.perf_counter() - start
    loss_mean, accuracy, images_seen = _reduced(loss_sum, correct, count, device)
    return EpochStats(loss_mean, accuracy, images_seen, seconds)
