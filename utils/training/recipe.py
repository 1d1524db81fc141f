"""The optimisation recipe from timm's parts: loss, mixup/cutmix, optimizer, learning-rate schedule; for
multi-label data, BCE with logits on multi-hot targets that mixup/cutmix mix."""
from __future__ import annotations

from typing import Optional

import timm.optim
import timm.scheduler
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import BinaryCrossEntropy, LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

from .settings import LossSettings, OptimizerSettings, ScheduleSettings

CRITERIA = ("CrossEntropy", "BCELogitsLoss")
SCHEDULES = ("multistep", "step", "cosine", "none")


class MultiLabelBCE(nn.Module):
    """BCE with logits on multi-hot (or mixed) targets, each class its own binary problem; ``smoothing`` pulls every
    target towards 1/2 (``t (1 - s) + s / 2``, as timm smooths multi-label targets)."""

    def __init__(self, smoothing: float = 0.0) -> None:
        super().__init__()
        self.smoothing = smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.float() * (1 - self.smoothing) + self.smoothing / 2
        return F.binary_cross_entropy_with_logits(logits, targets)


class MultiLabelMixup(Mixup):
    """timm's mixup / cutmix of the images, mixing multi-hot targets (B, C) with the same weights (timm's own
    mixes one class index per image). Smoothing is the criterion's (:class:`MultiLabelBCE`): it commutes with
    mixing."""

    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mode == "elem":
            lam = self._mix_elem(x)
        elif self.mode == "pair":
            lam = self._mix_pair(x)
        else:
            lam = self._mix_batch(x)
        target = target.float()
        return x, target * lam + target.flip(0) * (1 - lam)


def build_criterion(name: str, smoothing: float, mixup_active: bool, multi_label: bool = False) -> nn.Module:
    if name not in CRITERIA:
        raise ValueError(f"--criterion {name}: expected one of {', '.join(CRITERIA)}")
    if multi_label:
        if name != "BCELogitsLoss":
            raise ValueError(f"--criterion {name}: multi-label data (--dataset voc) is learnt with --criterion "
                             f"BCELogitsLoss, one binary problem per class")
        return MultiLabelBCE(smoothing)
    if name == "BCELogitsLoss":
        return BinaryCrossEntropy(smoothing=smoothing)
    if mixup_active:  # mixup already smooths the soft targets it builds
        return SoftTargetCrossEntropy()
    return LabelSmoothingCrossEntropy(smoothing) if smoothing > 0 else nn.CrossEntropyLoss()


def build_mixup(loss: LossSettings, num_classes: int, multi_label: bool = False) -> Optional[Mixup]:
    if not loss.mixes:
        return None
    if multi_label:
        return MultiLabelMixup(mixup_alpha=loss.mixup, cutmix_alpha=loss.cutmix, prob=loss.mixup_prob,
                               switch_prob=loss.mixup_switch_prob, label_smoothing=0.0, num_classes=num_classes)
    return Mixup(mixup_alpha=loss.mixup, cutmix_alpha=loss.cutmix, prob=loss.mixup_prob,
                 switch_prob=loss.mixup_switch_prob, label_smoothing=loss.smoothing, num_classes=num_classes)


def build_optimizer(model: nn.Module, settings: OptimizerSettings) -> torch.optim.Optimizer:
    return timm.optim.create_optimizer_v2(model, opt=settings.opt, lr=settings.lr, weight_decay=settings.weight_decay,
                                          momentum=settings.momentum)


def build_scheduler(optimizer: torch.optim.Optimizer, settings: ScheduleSettings, epochs: int, updates_per_epoch: int):
    """timm's schedule of ``settings.sched`` over ``epochs`` (None for 'none'), stepped per epoch; warm-up per
    update."""
    if settings.sched == "none":
        return None
    scheduler, _ = timm.scheduler.create_scheduler_v2(
        optimizer, sched=settings.sched, num_epochs=epochs, decay_epochs=settings.decay_epochs,
        decay_milestones=list(settings.milestones), decay_rate=settings.decay_rate, min_lr=settings.min_lr,
        warmup_lr=settings.warmup_lr, warmup_epochs=settings.warmup_epochs, step_on_epochs=True,
        updates_per_epoch=updates_per_epoch)
    return scheduler
