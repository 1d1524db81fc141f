"""The task object that training and evaluation share: losses, scores, meters and explained classes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from utils.data import ABSENT, DIFFICULT, MULTI_LABEL, PRESENT, SINGLE_LABEL
from utils.task import MultiLabelTask, Task, create_task


def test_create_task_kinds_and_errors():
    assert type(create_task(SINGLE_LABEL)) is Task and not create_task(SINGLE_LABEL).multi_label
    multi = create_task(MULTI_LABEL, pred_topk=2)
    assert isinstance(multi, MultiLabelTask) and multi.pred_topk == 2 and multi.multi_label
    with pytest.raises(ValueError, match="unknown task 'detection'"):
        create_task("detection")
    # the prediction flags are checked whatever the kind, so a typo fails before any work
    with pytest.raises(ValueError, match="--pred_threshold must be in"):
        create_task(SINGLE_LABEL, pred_threshold=1.5)
    with pytest.raises(ValueError, match="--pred_topk must be >= 1"):
        create_task(MULTI_LABEL, pred_topk=0)


def test_single_label_meter_is_cross_entropy_and_top1():
    generator = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(10, 4, generator=generator), torch.randint(0, 4, (10,), generator=generator)
    task = create_task(SINGLE_LABEL)
    meter = task.meter(4)
    loss = 0.0
    for part in (slice(0, 6), slice(6, 10)):
        loss += meter.summed_loss(logits[part], labels[part])
        meter.add(logits[part], labels[part])
    scored = meter.finish(loss, 10)
    assert scored.loss == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-6)
    assert scored.score == scored.accuracy == pytest.approx(100 * (logits.argmax(1) == labels).float().mean().item())
    assert scored.images == 10 and scored.mean_ap is None
    assert torch.equal(task.scores(logits), logits.softmax(-1))


def all_point_ap(scores: torch.Tensor, flags: torch.Tensor) -> float:
    """VOC2010+'s AP, written out: the area under the precision envelope, difficult-only images left out."""
    keep = flags != DIFFICULT
    order = scores[keep].argsort(descending=True)
    hits = (flags[keep][order] == PRESENT).double()
    recall = hits.cumsum(0) / hits.sum()
    precision = hits.cumsum(0) / torch.arange(1, len(hits) + 1)
    envelope = torch.flip(torch.cummax(torch.flip(precision, [0]), 0).values, [0])
    steps = torch.diff(torch.cat([torch.zeros(1, dtype=torch.float64), recall]))
    return float((steps * envelope).sum())


def test_multi_label_meter_is_bce_on_present_and_mean_ap():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(12, 3, generator=generator)
    labels = torch.full((12, 3), ABSENT)
    labels[::2, 0] = PRESENT
    labels[1::3, 1] = PRESENT
    labels[2, 1] = DIFFICULT
    labels[:4, 2] = PRESENT
    task = create_task(MULTI_LABEL)
    meter = task.meter(3)
    loss = meter.summed_loss(logits, labels)
    meter.add(logits, labels)
    scored = meter.finish(loss, 12)
    targets = task.loss_targets(labels)
    assert torch.equal(targets, (labels != ABSENT).float())  # difficult objects are there: positives of the loss
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets).item()
    assert scored.loss == pytest.approx(expected, rel=1e-6)
    # AP leaves difficult-only images out of their class, as VOC's devkit does
    ap = [all_point_ap(logits[:, c], labels[:, c]) for c in range(3)]
    assert scored.class_ap == pytest.approx([100 * a for a in ap], abs=1e-9)
    assert scored.score == pytest.approx(np.mean(scored.class_ap))
    assert task.score_label == "mAP" and task.default_criterion == "BCELogitsLoss"


def test_explained_pairs_follow_the_class_source():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 1.0, 0.1]])
    single = create_task(SINGLE_LABEL)
    assert single.explained(torch.tensor([2, 1]), logits, "gt") == [(0, 2), (1, 1)]
    assert single.explained(torch.tensor([2, 1]), logits, "pred") == [(0, 0), (1, 1)]
    labels = torch.tensor([[PRESENT, DIFFICULT, PRESENT], [ABSENT, PRESENT, ABSENT]])
    multi = create_task(MULTI_LABEL)
    assert multi.explained(labels, logits, "gt") == [(0, 0), (0, 2), (1, 1)]
    # sigmoid > 0.5 means logit > 0
    assert multi.explained(labels, logits, "pred") == [(0, 0), (0, 2), (1, 1), (1, 2)]
    assert create_task(MULTI_LABEL, pred_topk=1).explained(labels, logits, "pred") == [(0, 0), (1, 1)]
    assert "sigmoid exceeds 0.5" in multi.describe_selection("pred")
