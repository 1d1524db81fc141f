"""The training and validation passes over a loader, scored by accuracy or, for multi-label data, mAP."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Union

import torch
import torch.nn as nn
from timm.data import Mixup

from utils.data import ABSENT
from utils.faithfulness import MEAN_AP, class_average_precision, mean_average_precision
from utils.runtime.distributed import gather_rows, reduce_metrics
from utils.runtime.forward import ForwardSettings
from utils.runtime.progress import progress


@dataclass
class Optimisation:
    """What one training step needs besides the model and the batch."""

    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Optional[object] = None
    mixup: Optional[Mixup] = None
    scaler: Optional[torch.amp.GradScaler] = None
    clip_grad: Optional[float] = None
    ema: Optional[object] = None

    def step(self, model: nn.Module, loss: torch.Tensor) -> None:
        """Backward, clip, optimizer step (through the fp16 scaler when there is one)."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if self.clip_grad:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), self.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            if self.clip_grad:
                nn.utils.clip_grad_norm_(model.parameters(), self.clip_grad)
            self.optimizer.step()

    def after_step(self, model: nn.Module, update: int) -> None:
        """EMA and the per-update schedule, ``update`` counted from the start of training."""
        if self.ema is not None:
            self.ema.update(model, step=update)
        if self.scheduler is not None:
            self.scheduler.step_update(num_updates=update + 1)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]


@dataclass
class EpochStats:
    """One pass: mean loss, top-1 accuracy (%) of single-label data or, for multi-label data, the AP of every class
    and their mean (%, :mod:`utils.faithfulness.precision`)."""

    loss: float
    accuracy: Optional[float]
    images: int
    seconds: float
    mean_ap: Optional[float] = None
    class_ap: Optional[list[Optional[float]]] = None

    @property
    def throughput(self) -> float:
        return self.images / max(self.seconds, 1e-9)

    @property
    def score(self) -> float:
        """What picks the best epoch: mAP for multi-label data, else accuracy."""
        return self.mean_ap if self.class_ap is not None else self.accuracy


class Accuracy:
    """Scores single-label data (class indices): cross-entropy and top-1 accuracy."""

    def __init__(self) -> None:
        self.correct = 0.0

    @staticmethod
    def loss_targets(labels: torch.Tensor) -> torch.Tensor:
        return labels

    @staticmethod
    def summed_loss(logits: torch.Tensor, labels: torch.Tensor) -> float:
        return nn.functional.cross_entropy(logits, labels, reduction="sum").item()

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.correct += (logits.argmax(dim=1) == labels).sum().item()

    def finish(self, loss_sum: float, count: float, seconds: float) -> EpochStats:
        """Loss and accuracy over every process (sums and counts, so uneven shards weigh right)."""
        totals = reduce_metrics({"loss_sum": loss_sum, "correct": self.correct, "count": count})
        count = max(totals["count"], 1)
        return EpochStats(totals["loss_sum"] / count, 100 * totals["correct"] / count, int(totals["count"]), seconds)


class MeanAveragePrecision:
    """Scores multi-label data (label vectors 1 / -1 / 0, :mod:`utils.data.voc`): BCE with logits on the classes
    present (difficult instances included: the object is there), AP per class over every process. Images are
    ranked by the logit: the sigmoid's order, without the ties of its saturation at 1 in float32."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.rows: list[torch.Tensor] = []

    @staticmethod
    def loss_targets(labels: torch.Tensor) -> torch.Tensor:
        return (labels != ABSENT).float()

    def summed_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> float:
        loss = nn.functional.binary_cross_entropy_with_logits(logits, self.loss_targets(labels), reduction="none")
        return loss.mean(1).sum().item()

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.rows.append(torch.cat([logits.detach().float(), labels.float()], dim=1).cpu())

    def finish(self, loss_sum: float, count: float, seconds: float) -> EpochStats:
        totals = reduce_metrics({"loss_sum": loss_sum, "count": count})
        rows = gather_rows(torch.cat(self.rows) if self.rows else torch.zeros(0, 2 * self.num_classes))
        scores, labels = rows.double().numpy().reshape(len(rows), 2, -1).transpose(1, 0, 2)
        class_ap = [None if ap is None else MEAN_AP.scale * ap for ap in class_average_precision(scores, labels)]
        return EpochStats(totals["loss_sum"] / max(totals["count"], 1), None, int(totals["count"]), seconds,
                          mean_average_precision(class_ap), class_ap)


Scoring = Callable[[], Union[Accuracy, MeanAveragePrecision]]


def train_one_epoch(model: nn.Module, loader: Iterable, optimisation: Optimisation, forward: ForwardSettings,
                    device: torch.device, epoch: int, show_progress: bool,
                    on_step: Optional[Callable[[int, float], None]] = None, scoring: Scoring = Accuracy) -> EpochStats:
    """One pass over ``loader``; ``on_step(update, loss)`` after each step. ``scoring``: :class:`Accuracy` for class
    indices, :class:`MeanAveragePrecision` for multi-label vectors."""
    model.train()
    updates_per_epoch = len(loader)
    meter = scoring()
    loss_sum = count = 0.0
    start = time.perf_counter()
    bar = progress(loader, show_progress, desc=f"epoch {epoch + 1} train", leave=False)
    for step, (images, labels) in enumerate(bar):
        images = forward.prepare(images, device)
        labels = labels.to(device, non_blocking=True)
        targets = meter.loss_targets(labels)
        if optimisation.mixup is not None:
            images, targets = optimisation.mixup(images, targets)
        with forward.autocast(device):
            logits = model(images)
        loss = optimisation.criterion(logits.float(), targets)
        optimisation.step(model, loss)
        update = epoch * updates_per_epoch + step
        optimisation.after_step(model, update)
        batch = images.shape[0]
        loss_sum += loss.item() * batch
        meter.add(logits, labels)
        count += batch
        if show_progress:
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{optimisation.lr:.2e}")
        if on_step is not None:
            on_step(update, loss.item())
    return meter.finish(loss_sum, count, time.perf_counter() - start)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, forward: ForwardSettings, device: torch.device, show_progress: bool,
             desc: str = "eval", scoring: Scoring = Accuracy) -> EpochStats:
    """Loss and accuracy (or mAP, see :func:`train_one_epoch`) over ``loader`` (each process its own shard,
    reduced)."""
    model.eval()
    meter = scoring()
    loss_sum = count = 0.0
    start = time.perf_counter()
    for images, labels in progress(loader, show_progress, desc=desc, leave=False):
        images = forward.prepare(images, device)
        labels = labels.to(device, non_blocking=True)
        with forward.autocast(device):
            logits = model(images).float()
        loss_sum += meter.summed_loss(logits, labels)
        meter.add(logits, labels)
        count += images.shape[0]
    return meter.finish(loss_sum, count, time.perf_counter() - start)
