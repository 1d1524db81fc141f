"""The optimisation recipe from timm's parts: loss, mixup/cutmix, optimizer, learning-rate schedule."""
from __future__ import annotations

import argparse
from typing import Optional

import timm.optim
import timm.scheduler
import torch
import torch.nn as nn
from timm.data import Mixup
from timm.loss import BinaryCrossEntropy, LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

CRITERIA = ("CrossEntropy", "BCELogitsLoss")
SCHEDULES = ("multistep", "step", "cosine", "none")


def build_criterion(name: str, smoothing: float, mixup_active: bool) -> nn.Module:
    if name not in CRITERIA:
        raise ValueError(f"--criterion {name}: expected one of {', '.join(CRITERIA)}")
    if name == "BCELogitsLoss":
        return BinaryCrossEntropy(smoothing=smoothing)
    if mixup_active:  # mixup already smooths the soft targets it builds
        return SoftTargetCrossEntropy()
    return LabelSmoothingCrossEntropy(smoothing) if smoothing > 0 else nn.CrossEntropyLoss()


def build_mixup(args: argparse.Namespace, num_classes: int) -> Optional[Mixup]:
    if args.mixup <= 0 and args.cutmix <= 0:
        return None
    return Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, prob=args.mixup_prob,
                 switch_prob=args.mixup_switch_prob, label_smoothing=args.smoothing, num_classes=num_classes)


def build_optimizer(model: nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    return timm.optim.create_optimizer_v2(model, opt=args.opt, lr=args.lr, weight_decay=args.weight_decay,
                                          momentum=args.momentum)


def build_scheduler(optimizer: torch.optim.Optimizer, args: argparse.Namespace, updates_per_epoch: int):
    """timm's schedule of ``--sched`` (None for 'none'), stepped per epoch; warm-up per update."""
    if args.sched == "none":
        return None
    scheduler, _ = timm.scheduler.create_scheduler_v2(
        optimizer, sched=args.sched, num_epochs=args.epochs, decay_epochs=args.decay_epochs,
        decay_milestones=args.milestones, decay_rate=args.decay_rate, min_lr=args.min_lr,
        warmup_lr=args.warmup_lr, warmup_epochs=args.warmup_epochs, step_on_epochs=True,
        updates_per_epoch=updates_per_epoch)
    return scheduler
