"""The paper's comparison, shrunken (one seed, one epoch, a few images): every cell of the table is filled; its
publication into the README's block of that experiment."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from utils.runtime.io import read_csv

REPO = Path(__file__).resolve().parents[2]


# the speed knobs of the *_224.sh scripts: bf16 autocast for training, Score-CAM's masked forwards, the metrics
BF16_KNOBS = ["--train_amp", "bf16", "--slow_amp", "bf16", "--metrics_amp", "bf16"]


@pytest.mark.parametrize("knobs", [pytest.param([], id="fp32"),
                                   pytest.param(BF16_KNOBS, id="bf16", marks=pytest.mark.slow)])
def test_shrunken_comparison_fills_every_cell(tmp_path, knobs):
    out = tmp_path / "experiment"
    result = subprocess.run(
        [sys.executable, "-m", "routines.experiments.compare", "--dataset", "builtin", "--seeds", "0", "--epochs", "1",
         "--stream_epochs", "1", "--imsize", "64", "--eval_fraction", "0.05", "--slow_fraction", "0.02",
         "--out", str(out), *knobs],
        cwd=REPO, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = json.loads((out / "results.json").read_text())["rows"]
    expected = {("gradcam", "gap"), ("gradcam", "ca"), ("gradcam++", "gap"), ("gradcam++", "ca"),
                ("scorecam", "gap"), ("scorecam", "ca"), ("attention", "ca")}
    assert {(r["method"], r["pooling"]) for r in rows} == expected
    for row in rows:
        assert row["images"] == (6 if row["method"] == "scorecam" else 15), row
        for key in ("accuracy", "ad", "ai", "ag", "insertion", "deletion", "pointing_game"):
            assert math.isfinite(row[key]), (row["method"], row["pooling"], key)
    table = (out / "results.md").read_text()
    assert "| gradcam | CA |" in table and "nan" not in table
    assert "| gradcam | CA - GAP | 15 pairs |" in table and "| attention - gradcam | CA | 15 |" in table
    for plot in ("curves.png", "training.png"):
        assert (out / plot).stat().st_size > 10_000
    assert {r["run"] for r in read_csv(out / "training.csv")} == {"GAP seed 0", "CA seed 0"}
    page = (out / "compare.html").read_text()
    assert '<td class="text">gradcam</td><td class="text">CA</td>' in page and 'class="delta' in page
    assert 'class="interval"' in page
    check_published_statistics(out)
    seconds = sorted(out.rglob("*.seconds"))
    assert len(seconds) == 2 + 2 * 2 * 2, seconds  # 2 trainings, (recognition + objrecon) x 2 pools x 2 subsets
    assert all(float(f.read_text()) > 0 for f in seconds)
    amp = "bf16" if knobs else "none"
    assert yaml.safe_load((out / "seed0" / "ca" / "args.yaml").read_text())["amp"] == amp
    for pool in ("gap", "ca"):
        assert json.loads((out / "seed0" / f"eval_{pool}" / "classification.json").read_text())["amp"] == "none"
        assert json.loads((out / "seed0" / f"eval_{pool}_slow" / "classification.json").read_text())["amp"] == amp
        summary = json.loads((out / "seed0" / f"eval_{pool}" / "summary.json").read_text())
        assert summary["protocol"]["precision"]["amp"] == amp
    assert ("bf16 autocast: training, scorecam maps, metric forwards" in table) == bool(knobs)


def check_published_statistics(out: Path) -> None:
    """per_image.csv holds every scored row with the metrics of metrics.csv, and each CA - GAP record of
    results.json is the paired difference of those rows (recomputed here from the CSV)."""
    from utils.faithfulness import METRIC_KEYS, metric, paired_difference

    per_image = read_csv(out / "per_image.csv")
    assert list(per_image[0])[:4] == ["seed", "pooling", "method", "index"]
    metrics_csv = read_csv(out / "seed0" / "eval_gap" / "metrics.csv")
    assert [k for k in per_image[0] if k in METRIC_KEYS] == [k for k in metrics_csv[0] if k in METRIC_KEYS]
    assert len([r for r in per_image if r["pooling"] == "gap" and r["method"] == "gradcam"]) == len(
        [r for r in metrics_csv if r["method"] == "gradcam"])
    records = json.loads((out / "results.json").read_text())["differences"]
    fields = {"method", "metric", "baseline", "label", "mean", "ci_low", "ci_high", "p_value", "pairs"}
    assert records and all(set(r) == fields for r in records)
    checked = 0
    for record in records:
        if record["baseline"] != "gap" or record["metric"] not in ("ad", "insertion"):
            continue
        rows = {(r["pooling"], r["index"]): float(r[record["metric"]]) for r in per_image
                if r["method"] == record["method"]}
        differences = [metric(record["metric"]).scale * (rows["ca", i] - rows["gap", i])
                       for (pool, i) in rows if pool == "gap"]
        expected = paired_difference(differences, [i for (pool, i) in rows if pool == "gap"])
        assert record["pairs"] == len(differences)
        assert (record["mean"], record["ci_low"], record["ci_high"], record["p_value"]) == pytest.approx(
            (expected.mean, expected.ci_low, expected.ci_high, expected.p_value))
        assert record["ci_low"] <= record["mean"] <= record["ci_high"] and 0 < record["p_value"] <= 1
        checked += 1
    assert checked >= 6  # AD and insertion of gradcam, gradcam++ and scorecam
    assert any(r["baseline"] == "gradcam" and r["method"] == "attention" and r["label"] == "ca" for r in records)

    # --recheck recomputes every record from per_image.csv alone, and says so when results.json disagrees
    def recheck() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "routines.experiments.compare", "--recheck", str(out)],
                              cwd=REPO, capture_output=True, text=True, timeout=600)

    agreed = recheck()
    assert agreed.returncode == 0 and "largest deviation 0" in agreed.stdout, agreed.stdout + agreed.stderr
    results = json.loads((out / "results.json").read_text())
    results["differences"][0]["ci_low"] -= 0.5
    (out / "results.json").write_text(json.dumps(results))
    disagreed = recheck()
    assert disagreed.returncode == 1 and "results.json does not hold the differences" in disagreed.stderr
    assert "largest deviation 0.5" in disagreed.stderr


def test_publish_rewrites_only_its_own_block(tmp_path):
    """builtin_224 beside builtin: the table and the plot land in the experiment's own block, the rest stays."""
    from routines.experiments.compare import publish

    out = tmp_path / "run"
    out.mkdir()
    for name in ("results.csv", "results.json", "per_image.csv", "curves.png", "training.csv", "training.png"):
        (out / name).write_text(name)
    (out / "results.md").write_text("| table of 224 |\n")
    readme = tmp_path / "README.md"
    before = "intro\n<!-- results:builtin -->\nold 128\n<!-- /results:builtin -->\n"
    readme.write_text(before + "<!-- results:builtin_224 -->\nnot run yet\n<!-- /results:builtin_224 -->\nend\n")
    publish(out, tmp_path / "assets" / "builtin_224", "builtin_224", [readme])
    assert readme.read_text() == before + (
        "<!-- results:builtin_224 -->\n| table of 224 |\n\n"
        "![insertion and deletion, builtin_224](assets/builtin_224/curves.png)\n\n"
        "![learning curves of the compared models, builtin_224](assets/builtin_224/training.png)\n"
        "<!-- /results:builtin_224 -->\nend\n")
    assert (tmp_path / "assets" / "builtin_224" / "results.json").read_text() == "results.json"


def test_the_readme_summary_lists_every_folder_with_difference_records(tmp_path):
    """The README's summary block: one row per published folder with CA - GAP records (older ones are left out),
    Grad-CAM's differences bold where their interval excludes 0, the link relative to the page."""
    from routines.experiments.compare import publish

    results = tmp_path / "assets" / "results"
    record = {"method": "gradcam", "baseline": "gap", "label": "ca", "pairs": 900, "p_value": 0.01}
    published = {
        "fashion_mnist": {"setup": {"dataset": "fashion_mnist", "backbone": "tf_efficientnet_lite0", "imsize": "128"},
                          "per_seed": {"0": {}, "1": {}, "2": {}},
                          "rows": [{"method": "gradcam", "pooling": "gap", "accuracy": 85.11},
                                   {"method": "gradcam", "pooling": "ca", "accuracy": 84.89}],
                          "differences": [{**record, "metric": "ag", "mean": 2.5, "ci_low": 0.75, "ci_high": 4.21},
                                          {**record, "metric": "ai", "mean": 0.67, "ci_low": -1.78, "ci_high": 3.11},
                                          {**record, "baseline": "gradcam", "method": "attention", "metric": "ad",
                                           "mean": 7.2, "ci_low": 4.6, "ci_high": 9.8}]},
        "old_224": {"setup": {"dataset": "builtin"}, "rows": [], "per_seed": {}},
    }
    for name, data in published.items():
        (results / name).mkdir(parents=True)
        (results / name / "results.json").write_text(json.dumps(data))
        (results / name / "results.md").write_text("| table |\n")
    readme = tmp_path / "README.md"
    readme.write_text("<!-- results:summary -->\n<!-- /results:summary -->\n")
    publish(results / "fashion_mnist", results / "fashion_mnist", "fashion_mnist", [readme])
    rows = [line for line in readme.read_text().splitlines() if line.startswith("| [")]
    assert rows == ["| [fashion_mnist](assets/results/fashion_mnist/results.md): tf_efficientnet_lite0, 128 px, 3 "
                    "seed(s) | 85.11 -> 84.89 |  | +0.67 [-1.78, +3.11] | **+2.50 [+0.75, +4.21]** |  |  |  |"]


@pytest.mark.slow
def test_shrunken_multilabel_comparison_reports_map_pairs_and_class_ap(tmp_path):
    """The built-in multi-label set (voc_builtin): mAP in the score column, image-class pairs counted, every metric
    filled, and the per-class AP table under GAP and CA."""
    out = tmp_path / "experiment"
    result = subprocess.run(
        [sys.executable, "-m", "routines.experiments.compare", "--dataset", "voc_builtin", "--seeds", "0", "--epochs",
         "1", "--stream_epochs", "1", "--imsize", "64", "--eval_fraction", "0.05", "--slow_fraction", "0.02",
         "--methods", "gradcam", "scorecam", "attention", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {(r["method"], r["pooling"]) for r in rows} == {("gradcam", "gap"), ("gradcam", "ca"), ("scorecam", "gap"),
                                                           ("scorecam", "ca"), ("attention", "ca")}
    for row in rows:
        assert row["images"] == (4 if row["method"] == "scorecam" else 10), row
        assert row["pairs"] >= row["images"], row
        for key in ("map", "ad", "ai", "ag", "insertion", "deletion", "pointing_game"):
            assert math.isfinite(row[key]), (row["method"], row["pooling"], key)
        assert "accuracy" not in row
    table = (out / "results.md").read_text()
    assert "| method | pooling | images (pairs) | mAP | NLL | ECE | AD |" in table and "nan" not in table
    assert "| gradcam | CA - GAP |" in table
    classification = json.loads((out / "seed0" / "eval_gap" / "classification.json").read_text())
    assert classification["ap"] == "voc" and math.isfinite(classification["nll"]) and 0 <= classification["ece"] <= 100
    assert "AP per class" in table and "| disc |" in table and "Poster" not in table
    assert "AP: voc (per class, the VOC devkit's all-point interpolated AP" in table


def test_one_seed_table_shows_no_spread():
    """A one-seed run (the 224 px scripts) has no spread: its cells are plain values and its title says so."""
    from routines.experiments.compare import markdown_table

    row = {"method": "gradcam", "pooling": "gap", "images": 30, "accuracy": 99.0, "accuracy_spread": 0.0,
           "ad": 4.5, "ad_spread": 0.0}
    one = markdown_table([row], "builtin", "builtin", {}, seeds=1)
    assert "(one seed: no spread)" in one and "| gradcam | GAP | 30 | 99.00 | 4.50 |" in one and "+-" not in one
    two = markdown_table([dict(row, ad_spread=1.0)], "builtin", "builtin", {}, seeds=2)
    assert "| gradcam | GAP | 30 | 99.00 +- 0.00 | 4.50 +- 0.50 |" in two


def test_a_training_killed_after_its_first_epoch_is_not_taken_as_done(tmp_path):
    """Weights are written after every epoch: a rerun of the comparison must resume a training whose log is short,
    not evaluate its one-epoch model."""
    from routines.experiments.compare import trained
    from utils.runtime.layout import RunFolder

    run = RunFolder(tmp_path / "ca")
    run.path.mkdir()
    run.save_weights(run.weights, {"w": torch.zeros(1)}, {})
    rows = [{"epoch": epoch, "train_loss": 1.0 / epoch} for epoch in (1, 2, 3, 4)]
    assert not trained(run, 4)                   # weights, no log
    run.write_log(rows[:1])
    assert not trained(run, 4) and trained(run, 1)
    run.write_log(rows)
    assert trained(run, 4)
