"""The paper's comparison, shrunken (one seed, one epoch, a few images): every cell of the table is filled."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_shrunken_comparison_fills_every_cell(tmp_path):
    out = tmp_path / "experiment"
    result = subprocess.run(
        [sys.executable, "-m", "routines.experiments.compare", "--dataset", "builtin", "--seeds", "0", "--epochs", "1",
         "--stream_epochs", "1", "--imsize", "64", "--eval_fraction", "0.05", "--slow_fraction", "0.02",
         "--out", str(out)],
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
    assert (out / "curves.png").stat().st_size > 10_000
    seconds = sorted(out.rglob("*.seconds"))
    assert len(seconds) == 2 + 2 * 2 * 2, seconds  # 2 trainings, (recognition + objrecon) x 2 pools x 2 subsets
    assert all(float(f.read_text()) > 0 for f in seconds)


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
    assert "| method | pooling | images (pairs) | mAP |" in table and "nan" not in table
    assert "AP per class" in table and "| disc |" in table and "Poster" not in table
