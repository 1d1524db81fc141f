"""main_INets.py on multi-label data (--dataset voc): BCE with logits on multi-hot targets, mixup/cutmix mixing
them, mAP and per-class AP where accuracy is logged, the task in config.json."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.helpers import error_of, label_matrix
from utils.data import ABSENT, DIFFICULT, PRESENT, DataSource, Preprocessing, VOCDataset, build_dataset
from utils.evaluation.model import load_trained_model
from utils.faithfulness import class_average_precision, mean_average_precision
from utils.training.recipe import MultiLabelBCE, MultiLabelMixup


def test_bce_training_learns_the_builtin_multilabel_set(trained_voc_runs):
    """Two short epochs from the packaged ImageNet weights: validation mAP far above chance (a random ranking's AP
    is the share of positives, about 30%); the CA stream trained on the frozen model stays above it too."""
    labels = label_matrix(VOCDataset(trained_voc_runs["data"], "val"))
    kept = labels != DIFFICULT
    chance = 100 * float(np.mean((labels == PRESENT).sum(0) / kept.sum(0)))
    rows = {pool: list(csv.DictReader((trained_voc_runs[pool] / "log.csv").open())) for pool in ("gap", "ca")}
    gap, ca = float(rows["gap"][-1]["val_map"]), float(rows["ca"][-1]["val_map"])
    print(f"validation mAP after 2 epochs: GAP {gap:.1f}%, CA {ca:.1f}% (chance {chance:.1f}%)")
    assert gap > chance + 30 and ca > chance + 20
    assert float(rows["gap"][-1]["train_loss"]) < float(rows["gap"][0]["train_loss"])
    config = json.loads((trained_voc_runs["gap"] / "config.json").read_text())
    assert config["task"] == "multi-label" and config["class_names"] == ["disc", "square", "triangle", "star",
                                                                          "cross", "ring"]
    args = (trained_voc_runs["gap"] / "args.yaml").read_text()
    assert "criterion: BCELogitsLoss" in args and "dataset: voc" in args


def test_logged_ap_is_the_ap_of_the_saved_model(trained_voc_runs):
    """log.csv's per-class AP and mAP of the last epoch are those of model.safetensors on the validation image set
    (computed here from its logits, difficult-only images left out of a class's AP)."""
    model, config = load_trained_model(str(trained_voc_runs["gap"]))
    dataset = build_dataset(DataSource("voc", trained_voc_runs["data"]),
                            Preprocessing(config["imsize"], mean=config["mean"], std=config["std"]), train=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=100)
    with torch.no_grad():
        logits, labels = zip(*[(model(images), labels) for images, labels in loader])
    logits, labels = torch.cat(logits), torch.cat(labels)
    class_ap = [100 * ap for ap in class_average_precision(logits.numpy(), labels.numpy())]
    last = list(csv.DictReader((trained_voc_runs["gap"] / "log.csv").open()))[-1]
    logged = [float(last[f"val_ap_{name}"]) for name in config["class_names"]]
    np.testing.assert_allclose(logged, class_ap, atol=2e-3)
    assert float(last["val_map"]) == pytest.approx(mean_average_precision(class_ap), abs=2e-3)
    targets = (labels != ABSENT).float()
    loss = F.binary_cross_entropy_with_logits(logits, targets)
    assert float(last["val_loss"]) == pytest.approx(loss.item(), abs=1e-4)


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mixup_and_cutmix_mix_multi_hot_targets(kind):
    """Each image is constant, so the mixed image gives the weight back: lam v_i + (1 - lam) v_flip(i). The targets
    must be mixed with the same weight."""
    torch.manual_seed(0)
    np.random.seed(0)
    alphas = {"mixup": (1.0, 0.0), "cutmix": (0.0, 1.0)}[kind]
    mixup = MultiLabelMixup(mixup_alpha=alphas[0], cutmix_alpha=alphas[1], label_smoothing=0.0, num_classes=4)
    values = torch.tensor([0.0, 1.0, 3.0, 7.0])
    images = values.view(4, 1, 1, 1).expand(4, 3, 8, 8).clone()
    targets = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 1]], dtype=torch.float32)
    mixed_images, mixed = mixup(images, targets)
    lam = (mixed_images[0].mean() - values[3]) / (values[0] - values[3])
    assert 0 < lam < 1
    torch.testing.assert_close(mixed, lam * targets + (1 - lam) * targets.flip(0))
    assert mixed.shape == (4, 4) and not torch.equal(mixed, targets)


def test_multilabel_criterion_smooths_towards_one_half():
    logits, targets = torch.randn(5, 3), torch.randint(0, 2, (5, 3)).float()
    expected = F.binary_cross_entropy_with_logits(logits, targets * 0.8 + 0.1)
    torch.testing.assert_close(MultiLabelBCE(0.2)(logits, targets), expected)


def test_cross_entropy_on_multilabel_data_is_one_line(tmp_path):
    message = error_of(["--dataset", "voc", "--criterion", "CrossEntropy", "--store_dir", str(tmp_path / "r"),
                        "--epochs", "1", "--workers", "0"])
    assert "--criterion CrossEntropy" in message and "BCELogitsLoss" in message


def test_resume_of_a_single_label_run_as_multilabel_is_refused(trained_voc_runs, tmp_path):
    """A run folder whose config.json records no task (a single-label run of the code before it was recorded),
    continued with --dataset voc: refused, as another network would be."""
    import shutil
    run = tmp_path / "run"
    shutil.copytree(trained_voc_runs["gap"], run)
    config = json.loads((run / "config.json").read_text())
    del config["task"]
    (run / "config.json").write_text(json.dumps(config))
    message = error_of(["--dataset", "voc", "--imsize", "96", "--store_dir", str(run), "--resume", "--epochs", "3",
                        "--workers", "0", "--fraction", "0.4"])
    assert "--dataset (its task) single-label, but this run has --dataset (its task) multi-label" in message
