"""Single-label or multi-label: one object says what the task means for training and evaluation alike.

A dataset answers its task's kind (``dataset.task``) and a run's ``config.json`` records it (runs without one are
single-label). :func:`create_task` turns the kind into a :class:`Task`, which holds everything that differs between
the two: the loss's targets and its default criterion, how a logit becomes a class score, the headline score of a
pass (top-1 accuracy, or mAP) and which classes of an image are explained (maps and metrics are per ``(dataset
row, class)`` pair; a single-label image has one pair).

    >>> task = create_task("multi-label", pred_threshold=0.5)
    >>> task.class_score, task.default_criterion, task.score_label
    ('sigmoid', 'BCELogitsLoss', 'mAP')
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

import torch
import torch.nn as nn

from utils.data import ABSENT, MULTI_LABEL, PRESENT, SINGLE_LABEL
from utils.faithfulness import MEAN_AP, class_average_precision, mean_average_precision
from utils.runtime.distributed import gather_rows, reduce_metrics

# the default --pred_threshold: a class is predicted when its sigmoid exceeds one half
PRED_THRESHOLD = 0.5


@dataclass(frozen=True)
class PassScore:
    """What a pass over labelled images scores: mean loss, top-1 accuracy (%) of single-label data or, for
    multi-label data, the AP of every class and their mean (%, :mod:`utils.faithfulness.precision`)."""

    loss: float
    images: int
    accuracy: Optional[float] = None
    mean_ap: Optional[float] = None
    class_ap: Optional[list[Optional[float]]] = None

    @property
    def score(self) -> float:
        """The headline: mAP for multi-label data, else accuracy."""
        return self.mean_ap if self.class_ap is not None else self.accuracy


class Meter(Protocol):
    """Accumulates a pass batch by batch; ``finish`` reduces over every process."""

    def summed_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> float: ...

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None: ...

    def finish(self, loss_sum: float, count: float) -> PassScore: ...


class AccuracyMeter:
    """Single-label data (class indices): cross-entropy and top-1 accuracy."""

    def __init__(self) -> None:
        self.correct = 0.0

    @staticmethod
    def summed_loss(logits: torch.Tensor, labels: torch.Tensor) -> float:
        return nn.functional.cross_entropy(logits, labels, reduction="sum").item()

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.correct += (logits.argmax(dim=1) == labels).sum().item()

    def finish(self, loss_sum: float, count: float) -> PassScore:
        """Sums and counts over every process, so that uneven shards weigh right."""
        totals = reduce_metrics({"loss_sum": loss_sum, "correct": self.correct, "count": count})
        count = max(totals["count"], 1)
        return PassScore(totals["loss_sum"] / count, int(totals["count"]), accuracy=100 * totals["correct"] / count)


class AveragePrecisionMeter:
    """Multi-label data (label vectors 1 / -1 / 0, :mod:`utils.data.voc`): BCE with logits on the classes present
    (difficult instances included: the object is there), AP per class over every process. Images are ranked by the
    logit: the sigmoid's order, without the ties of its saturation at 1 in float32."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.rows: list[torch.Tensor] = []

    def summed_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> float:
        loss = nn.functional.binary_cross_entropy_with_logits(logits, (labels != ABSENT).float(), reduction="none")
        return loss.mean(1).sum().item()

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.rows.append(torch.cat([logits.detach().float(), labels.float()], dim=1).cpu())

    def finish(self, loss_sum: float, count: float) -> PassScore:
        totals = reduce_metrics({"loss_sum": loss_sum, "count": count})
        rows = gather_rows(torch.cat(self.rows) if self.rows else torch.zeros(0, 2 * self.num_classes))
        scores, labels = rows.double().numpy().reshape(len(rows), 2, -1).transpose(1, 0, 2)
        class_ap = [None if ap is None else MEAN_AP.scale * ap for ap in class_average_precision(scores, labels)]
        return PassScore(totals["loss_sum"] / max(totals["count"], 1), int(totals["count"]),
                         mean_ap=mean_average_precision(class_ap), class_ap=class_ap)


@dataclass(frozen=True)
class Task:
    """The single-label task: one class per image, softmax scores, cross-entropy, top-1 accuracy."""

    kind = SINGLE_LABEL
    default_criterion = "CrossEntropy"
    class_score = "softmax"  # how a logit becomes a class score (:func:`utils.faithfulness.class_scores`)
    score_key = "acc"  # the headline's column in a training log
    score_label = "acc"

    @property
    def multi_label(self) -> bool:
        return self.kind == MULTI_LABEL

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().softmax(-1)

    def loss_targets(self, labels: torch.Tensor) -> torch.Tensor:
        """What the criterion (and mixup) take for a batch's labels."""
        return labels

    def meter(self, num_classes: int) -> Meter:
        return AccuracyMeter()

    def true_classes(self, label) -> list[int]:
        """The classes of an image's label that are explained."""
        return [int(label)]

    def predicted_classes(self, logits: torch.Tensor) -> list[list[int]]:
        """Per image, the classes ``--pred`` explains: the top-1 class."""
        return [[c] for c in logits.argmax(-1).tolist()]

    def explained(self, labels: torch.Tensor, logits: torch.Tensor, class_source: str) -> list[tuple[int, int]]:
        """(position in the batch, class) of every pair a batch explains, image by image, classes ascending."""
        per_image = self.predicted_classes(logits) if class_source == "pred" else \
            [self.true_classes(label) for label in labels]
        return [(position, c) for position, classes in enumerate(per_image) for c in classes]

    def describe_selection(self, class_source: str) -> str:
        """Which classes are explained, as recorded in reports."""
        return "the ground-truth class" if class_source == "gt" else "the predicted (top-1) class"


@dataclass(frozen=True)
class MultiLabelTask(Task):
    """The multi-label task (Pascal VOC): a sigmoid per class, BCE on the classes present, mAP. ``pred_threshold`` /
    ``pred_topk``: which classes ``--pred`` explains (those whose sigmoid exceeds the threshold, or the top k)."""

    kind = MULTI_LABEL
    default_criterion = "BCELogitsLoss"
    class_score = "sigmoid"
    score_key = MEAN_AP.key
    score_label = MEAN_AP.label
    pred_threshold: float = PRED_THRESHOLD
    pred_topk: Optional[int] = None

    def __post_init__(self) -> None:
        _check_prediction_settings(self.pred_threshold, self.pred_topk)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().sigmoid()

    def loss_targets(self, labels: torch.Tensor) -> torch.Tensor:
        return (labels != ABSENT).float()

    def meter(self, num_classes: int) -> Meter:
        return AveragePrecisionMeter(num_classes)

    def true_classes(self, label) -> list[int]:
        """Every class present (not the classes whose instances are all difficult)."""
        return [c for c, flag in enumerate(torch.as_tensor(label).tolist()) if flag == PRESENT]

    def predicted_classes(self, logits: torch.Tensor) -> list[list[int]]:
        if self.pred_topk is not None:
            return [sorted(row) for row in logits.topk(min(self.pred_topk, logits.shape[1]), dim=1).indices.tolist()]
        chosen = self.scores(logits) > self.pred_threshold
        return [torch.nonzero(row).flatten().tolist() for row in chosen]

    def describe_selection(self, class_source: str) -> str:
        if class_source == "gt":
            return "every class present (classes with only difficult instances left out)"
        if self.pred_topk is not None:
            return f"the {self.pred_topk} classes of highest score"
        return f"every class whose sigmoid exceeds {self.pred_threshold}"


def create_task(kind: str = SINGLE_LABEL, pred_threshold: float = PRED_THRESHOLD,
                pred_topk: Optional[int] = None) -> Task:
    """The task of ``kind`` (:data:`~utils.data.SINGLE_LABEL` or :data:`~utils.data.MULTI_LABEL`); the prediction
    settings apply to multi-label tasks (one line for a bad threshold or k, whatever the kind)."""
    _check_prediction_settings(pred_threshold, pred_topk)
    if kind == MULTI_LABEL:
        return MultiLabelTask(pred_threshold, pred_topk)
    if kind != SINGLE_LABEL:
        raise ValueError(f"unknown task '{kind}': expected {SINGLE_LABEL} or {MULTI_LABEL}")
    return Task()


def _check_prediction_settings(pred_threshold: float, pred_topk: Optional[int]) -> None:
    if not 0 <= pred_threshold < 1:
        raise ValueError(f"--pred_threshold must be in [0, 1), got {pred_threshold}")
    if pred_topk is not None and pred_topk < 1:
        raise ValueError(f"--pred_topk must be >= 1, got {pred_topk}")
