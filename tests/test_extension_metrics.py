"""Extension in two files: a metric defined outside the package (in this file, or in a plugin file that the CLI
imports with --plugin), registered, then computed by the evaluation CLIs in-process (objrecon_imagenet.py:
metrics.csv, summary.json, the table, report.html; recognition_imagenet.py: a localisation metric in its report), on
a small untrained ResNet-18 and the small built-in dataset."""
from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import objrecon_imagenet
import recognition_imagenet
from models import create_model, data_config, model_config
from tests.helpers import read_maps
from utils.faithfulness import (
    METRIC_KEYS,
    LocalizationMetric,
    Metric,
    MetricBatch,
    energy_pointing_game,
    evaluate_batch,
    metric,
    prepare_saliency,
    register_metric,
    unregister_metric,
)
from utils.runtime.layout import RunFolder

pytestmark = pytest.mark.usefixtures("one_thread")

IMSIZE = 64      # the built-in 32 px images upsampled: ResNet-18's last feature map is 2x2
ROWS = ["0", "1", "2", "3", "4", "5"]   # the built-in validation list is index-major: one image per class


class Coverage(Metric):
    """Share of the image's pixels where the map, prepared as every metric prepares it, reaches half its range."""

    def compute(self, batch: MetricBatch) -> Mapping[str, torch.Tensor]:
        maps = prepare_saliency(batch.saliency, tuple(batch.images.shape[-2:]), batch.num_images)
        return {self.key: (maps >= 0.5).flatten(1).double().mean(1)}


class EnergyOutside(LocalizationMetric):
    """Share of the map's mass off the object mask: 1 - the energy pointing game."""

    def localize(self, saliency: torch.Tensor, masks: torch.Tensor, tolerance: float) -> torch.Tensor:
        return 1 - energy_pointing_game(saliency, masks)


COVERAGE = Coverage("coverage", "Cov", False, "share of pixels at half the map's range or more")
OUTSIDE = EnergyOutside("energy_outside", "Out", False, "share of the map's mass off the object mask")


@pytest.fixture
def toy_metrics() -> Iterator[None]:
    """The toy metrics registered for one test only: the other tests see the built-in metrics alone."""
    for declared in (COVERAGE, OUTSIDE):
        register_metric(declared)
    try:
        yield
    finally:
        for declared in (COVERAGE, OUTSIDE):
            unregister_metric(declared.key)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """An untrained GAP ResNet-18 for the built-in dataset's six classes, saved as a run folder at 64 px."""
    torch.manual_seed(0)
    model = create_model("resnet18", pool="gap", num_classes=6)
    run = RunFolder(tmp_path_factory.mktemp("tiny_run"))
    run.save_weights(run.weights, model.state_dict(), {})
    run.save_config(model_config(model, "resnet18", IMSIZE, *data_config("resnet18")))
    return run.path


def data_flags(small_builtin: Path) -> list[str]:
    return ["--root_data", str(small_builtin / "images"), "--path_lbl", str(small_builtin / "val.csv"),
            "--indexes", *ROWS, "--workers", "0"]


def test_a_registered_metric_flows_into_metrics_csv_summary_table_and_report(toy_metrics, tiny_run, small_builtin,
                                                                               tmp_path, capsys) -> None:
    store = tmp_path / "eval"
    summary = objrecon_imagenet.main(["--state_root", str(tiny_run), "--store_dir", str(store),
                                      *data_flags(small_builtin), "--method", "gradcam", "--save_maps",
                                      "--report_images", "2"])
    with (store / "metrics.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0])[-3:] == ["energy_pointing_game", "coverage", "energy_outside"]   # after the built-ins
    saved = read_maps(store, "gradcam")
    assert [str(i) for i in saved["indices"]] == [r["index"] for r in rows] == ROWS
    recomputed = (prepare_saliency(saved["maps"], (IMSIZE, IMSIZE)) >= 0.5).flatten(1).double().mean(1)
    assert len(set(recomputed.tolist())) > 1                              # the maps differ: the check can fail
    assert [float(r["coverage"]) for r in rows] == pytest.approx(recomputed.tolist(), abs=1e-12)
    assert [float(r["energy_outside"]) for r in rows] == pytest.approx(
        [1 - float(r["energy_pointing_game"]) for r in rows], abs=1e-12)
    written = json.loads((store / "summary.json").read_text())["results"]["gradcam"]
    assert written["coverage"] == summary["results"]["gradcam"]["coverage"]
    assert written["coverage"] == pytest.approx(100 * float(recomputed.mean()), abs=1e-9)
    assert "Cov↓" in capsys.readouterr().out
    assert "Cov" in (store / "report.html").read_text()


def test_a_registered_localisation_metric_is_in_recognitions_report(toy_metrics, tiny_run, small_builtin,
                                                                    tmp_path) -> None:
    report = recognition_imagenet.main(["--state_root", str(tiny_run), "--store_dir", str(tmp_path),
                                        *data_flags(small_builtin), "--salient", "--method", "gradcam",
                                        "--n_overlays", "0"])
    scores = report["localization"]["methods"]["gradcam"]
    assert scores["energy_outside"] == pytest.approx(100 - scores["energy_pointing_game"], abs=1e-9)


PLUGIN = '''"""A plugin file: objrecon_imagenet.py imports it (--plugin), its metric joins the run."""
from utils.faithfulness import Metric, register_metric


class KeptScore(Metric):
    """The share of the class score that the image masked by the map keeps: o / p, from the masked forward that
    the batch runs once for AD / AI / AG."""

    def compute(self, batch):
        return {self.key: batch.confidence["o"].double() / batch.confidence["p"].double()}


register_metric(KeptScore("kept_score", "Kept", True, "o / p: the class score kept on the masked image", scale=1.0))
'''


def test_the_plugin_flag_adds_a_metric_to_an_evaluation(tiny_run, small_builtin, tmp_path) -> None:
    plugin = tmp_path / "toy_metric_plugin.py"
    plugin.write_text(PLUGIN)
    store = tmp_path / "eval"
    try:
        summary = objrecon_imagenet.main(["--state_root", str(tiny_run), "--store_dir", str(store),
                                          *data_flags(small_builtin), "--method", "gradcam", "--report_images", "0",
                                          "--plugin", str(plugin)])
    finally:
        sys.modules.pop(plugin.stem, None)
        if "kept_score" in METRIC_KEYS:
            unregister_metric("kept_score")
    with (store / "metrics.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0])[-1] == "kept_score" and [r["index"] for r in rows] == ROWS
    kept = [float(r["o"]) / float(r["p"]) for r in rows]
    assert len(set(kept)) > 1
    assert [float(r["kept_score"]) for r in rows] == pytest.approx(kept, rel=1e-12)
    written = json.loads((store / "summary.json").read_text())["results"]["gradcam"]["kept_score"]
    assert written == summary["results"]["gradcam"]["kept_score"] == pytest.approx(float(np.mean(kept)), rel=1e-12)


def test_registration_errors_are_one_line_and_unregistering_restores_the_builtins() -> None:
    builtins = tuple(METRIC_KEYS)
    with pytest.raises(ValueError, match="a metric with key 'ad' is already registered"):
        register_metric(Coverage("ad", "AD2", False, "a second AD"))
    with pytest.raises(ValueError, match="key 'p' is taken"):
        register_metric(Coverage("p", "P", True, "the clean score again"))
    with pytest.raises(ValueError, match="lower-case letters"):
        register_metric(Coverage("Coverage %", "C", True, "not a column name"))
    with pytest.raises(ValueError, match="'insertion_curve', an output of metric 'insertion'"):
        register_metric(Coverage("coverage", "C", False, "a curve's name taken", keeps=("insertion_curve",)))
    with pytest.raises(TypeError, match="'plain' declares no computation"):
        register_metric(Metric("plain", "P", True, "declared but not computed"))
    register_metric(COVERAGE)
    try:
        assert tuple(METRIC_KEYS) == (*builtins, "coverage") and metric("coverage") is COVERAGE
    finally:
        assert unregister_metric("coverage") is COVERAGE
    assert tuple(METRIC_KEYS) == builtins
    with pytest.raises(KeyError, match="no metric 'coverage'"):
        unregister_metric("coverage")


class WrongRows(Metric):
    def compute(self, batch: MetricBatch) -> Mapping[str, torch.Tensor]:
        return {self.key: torch.zeros(batch.num_images + 1)}


def test_a_metric_with_the_wrong_number_of_rows_is_named() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    images, maps = torch.randn(2, 3, 8, 8), torch.rand(2, 2, 2)
    register_metric(WrongRows("wrong_rows", "W", True, "one row too many"))
    try:
        with pytest.raises(ValueError, match=r"metric 'wrong_rows' returned shape \(3,\) under 'wrong_rows'"):
            evaluate_batch(model, images, maps, [0, 1], (0.5,) * 3, (0.5,) * 3, perturbation=False)
    finally:
        unregister_metric("wrong_rows")
    assert np.isfinite(evaluate_batch(model, images, maps, [0, 1], (0.5,) * 3, (0.5,) * 3)["ad"]).all()
