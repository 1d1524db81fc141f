"""The training and validation passes over a loader, scored as the task scores (accuracy, or mAP)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch
import torch.nn as nn
from timm.data import Mixup

from utils.runtime.distributed import reduce_metrics
from utils.runtime.forward import ForwardSettings
from utils.runtime.progress import progress
from utils.task import PassScore, Task


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
    """One pass: what the task scores (:class:`~utils.task.PassScore`) and how long it took."""

    scored: PassScore
    seconds: float

    @property
    def loss(self) -> float:
        return self.scored.loss

    @property
    def score(self) -> float:
        """What picks the best epoch: the task's headline (accuracy, or mAP)."""
        return self.scored.score

    @property
    def throughput(self) -> float:
        return self.scored.images / max(self.seconds, 1e-9)


def train_one_epoch(model: nn.Module, loader: Iterable, optimisation: Optimisation, forward: ForwardSettings,
                    device: torch.device, epoch: int, show_progress: bool, task: Task, num_classes: int,
                    on_step: Optional[Callable[[int, float], None]] = None) -> EpochStats:
    """One pass over ``loader``, scored as ``task`` scores; ``on_step(update, loss)`` after each step."""
    model.train()
    updates_per_epoch = len(loader)
    meter = task.meter(num_classes)
    loss_sum = count = 0.0
    start = time.perf_counter()
    bar = progress(loader, show_progress, desc=f"epoch {epoch + 1} train", leave=False)
    for step, (images, labels) in enumerate(bar):
        images = forward.prepare(images, device)
        labels = labels.to(device, non_blocking=True)
        targets = task.loss_targets(labels)
        if optimisation.mixup is not None:
            images, targets = optimisation.mixup(images, targets)
        with forward.autocast(device):
            logits = model(images)
        loss = optimisation.criterion(logits.float(), targets)
        _stop_if_not_finite(loss, epoch, step)
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
    return EpochStats(meter.finish(loss_sum, count), time.perf_counter() - start)


DIVERGENCE_HINT = "lower --lr, set --clip_grad, or train with --amp none"


def _stop_if_not_finite(loss: torch.Tensor, epoch: int, step: int) -> None:
    """A ValueError before the optimizer step when the loss of any process is NaN or inf: the step would spread it
    into every weight. Under DDP the flag is summed over ranks, so that every rank stops, none waits in backward."""
    finite = bool(torch.isfinite(loss))
    if reduce_metrics({"not_finite": float(not finite)})["not_finite"] == 0:
        return
    value = f"{loss.item()}" if not finite else "not finite on another process"
    raise ValueError(f"epoch {epoch + 1} step {step + 1}: the training loss is {value}; training stopped before "
                     f"the step, the run folder keeps the last finite epoch: {DIVERGENCE_HINT}")


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, forward: ForwardSettings, device: torch.device, show_progress: bool,
             task: Task, num_classes: int, desc: str = "eval") -> EpochStats:
    """Loss and the task's score over ``loader`` (each process its own shard, reduced)."""
    model.eval()
    meter = task.meter(num_classes)
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
    return EpochStats(meter.finish(loss_sum, count), time.perf_counter() - start)
