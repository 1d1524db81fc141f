"""Single-label or multi-label: how an evaluation reads a model's logits and which classes of an image it explains.

A run's ``config.json`` records its task (runs without one are single-label), so recognition and objrecon score a
multi-label model with a sigmoid per class and explain every image-class pair without extra flags. Maps, metrics
and saliency files are per pair ``(dataset row, class)``; a single-label evaluation has one pair per image.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from utils.data import MULTI_LABEL, PRESENT, SINGLE_LABEL

Pair = tuple[int, int]  # (dataset row, class)
# the default --pred_threshold: a class is predicted when its sigmoid exceeds one half
PRED_THRESHOLD = 0.5


@dataclass(frozen=True)
class EvaluationTask:
    """``kind``: single-label or multi-label; ``pred_threshold`` / ``pred_topk``: which classes ``--pred`` explains
    for a multi-label model (the classes whose sigmoid exceeds the threshold, or the top k)."""

    kind: str = SINGLE_LABEL
    pred_threshold: float = PRED_THRESHOLD
    pred_topk: Optional[int] = None

    @property
    def multi_label(self) -> bool:
        return self.kind == MULTI_LABEL

    @property
    def class_score(self) -> str:
        """How a logit becomes a class score (:func:`utils.faithfulness.class_scores`)."""
        return "sigmoid" if self.multi_label else "softmax"

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().sigmoid() if self.multi_label else logits.float().softmax(-1)

    def true_classes(self, label) -> list[int]:
        """The classes of an image's label that are explained: the label itself, or every class present (not the
        classes whose instances are all difficult)."""
        if not self.multi_label:
            return [int(label)]
        return [c for c, flag in enumerate(torch.as_tensor(label).tolist()) if flag == PRESENT]

    def predicted_classes(self, logits: torch.Tensor) -> list[list[int]]:
        """Per image: the top-1 class; multi-label: the classes above ``pred_threshold`` or the ``pred_topk`` best."""
        if not self.multi_label:
            return [[c] for c in logits.argmax(-1).tolist()]
        if self.pred_topk is not None:
            return [sorted(row) for row in logits.topk(min(self.pred_topk, logits.shape[1]), dim=1).indices.tolist()]
        chosen = self.scores(logits) > self.pred_threshold
        return [torch.nonzero(row).flatten().tolist() for row in chosen]

    def explained(self, labels: torch.Tensor, logits: torch.Tensor, class_source: str) -> list[Pair]:
        """(position in the batch, class) of every pair a batch explains, image by image, classes ascending."""
        per_image = self.predicted_classes(logits) if class_source == "pred" else \
            [self.true_classes(label) for label in labels]
        return [(position, c) for position, classes in enumerate(per_image) for c in classes]

    def describe_selection(self, class_source: str) -> str:
        """Which classes are explained, as recorded in reports."""
        if not self.multi_label:
            return "the ground-truth class" if class_source == "gt" else "the predicted (top-1) class"
        if class_source == "gt":
            return "every class present (classes with only difficult instances left out)"
        if self.pred_topk is not None:
            return f"the {self.pred_topk} classes of highest score"
        return f"every class whose sigmoid exceeds {self.pred_threshold}"


def add_prediction_arguments(group: argparse._ArgumentGroup) -> None:
    """``--pred_threshold`` / ``--pred_topk``: the classes explained with ``--pred`` for multi-label models."""
    group.add_argument("--pred_threshold", type=float, default=PRED_THRESHOLD,
                       help="multi-label models: --pred explains every class whose sigmoid exceeds this")
    group.add_argument("--pred_topk", type=int, default=None,
                       help="multi-label models: --pred explains the K classes of highest score instead")


def task_of(kind: str, args: argparse.Namespace) -> EvaluationTask:
    """The task of the flags (one line for a bad threshold or k)."""
    if not 0 <= args.pred_threshold < 1:
        raise ValueError(f"--pred_threshold must be in [0, 1), got {args.pred_threshold}")
    if args.pred_topk is not None and args.pred_topk < 1:
        raise ValueError(f"--pred_topk must be >= 1, got {args.pred_topk}")
    return EvaluationTask(kind, args.pred_threshold, args.pred_topk)


def pair_key(pair: Pair, num_classes: int) -> int:
    """A pair as one integer that sorts pairs by row, then class (the order of every output)."""
    return pair[0] * num_classes + pair[1]


def select(tensor: torch.Tensor, positions: Sequence[int]) -> torch.Tensor:
    """The rows of a batch tensor for a list of pair positions (the batch itself when it is one pair per image)."""
    if list(positions) == list(range(tensor.shape[0])):
        return tensor
    return tensor[torch.as_tensor(positions, dtype=torch.long, device=tensor.device)]
