"""The stream's recipe sweep, shrunken (64 px, one-epoch GAP base, two short recipes): every run scored on images
held out of the training list (never the validation list), its curves written, the recipe of the lowest held-out
NLL chosen, and a rerun that reuses the finished runs."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from utils.runtime.io import read_csv

REPO = Path(__file__).resolve().parents[2]


def sweep(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "routines.experiments.sweep", "--dataset", "builtin", "--imsize", "64", "--gap_epochs",
         "1", "--base_epochs", "1", "--recipes", "lr=1e-3,epochs=1", "lr=1e-5,epochs=2,wd=0", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=1200)


def test_shrunken_sweep_scores_held_out_training_images_and_chooses_by_nll(tmp_path):
    out = tmp_path / "sweep"
    result = sweep(out)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    # no validation list beside the training list: main_INets.py holds out --holdout of the training images
    assert not (out / "lists" / "val.csv").exists()
    streams = ["ca_gap1_lr0.001_e1_wd0.05_w0", "ca_gap1_lr1e-05_e2_wd0_w0"]
    for name in ["gap_e1", *streams]:
        assert yaml.safe_load((out / name / "args.yaml").read_text()).get("val_list") is None
        log = (out / "logs" / f"{name}.log").read_text()
        assert "held out (--val_split 0.2" in log, log[-500:]
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["minutes"] > 0
    runs = {row["run"]: row for row in summary["runs"]}
    assert set(runs) == {"GAP 1 epochs", "CA lr0.001_e1_wd0.05_w0", "CA lr1e-05_e2_wd0_w0"}
    streams_by_nll = sorted((r for r in runs.values() if r["pooling"] == "ca"), key=lambda r: r["val_loss"])
    assert summary["chosen"] == streams_by_nll[0]
    assert f"| {summary['chosen']['run']} **(chosen)** |" in (out / "sweep.md").read_text()
    curves = read_csv(out / "curves.csv")
    assert [(r["run"], r["epoch"]) for r in curves] == [
        ("GAP 1 epochs", "1"), ("CA lr0.001_e1_wd0.05_w0", "1"), ("CA lr1e-05_e2_wd0_w0", "1"),
        ("CA lr1e-05_e2_wd0_w0", "2")]
    assert (out / "curves.png").stat().st_size > 10_000

    logs = {path: path.stat().st_mtime_ns for path in (out / "logs").glob("*.log")}
    again = sweep(out)
    assert again.returncode == 0, again.stderr[-2000:]
    assert {path: path.stat().st_mtime_ns for path in (out / "logs").glob("*.log")} == logs  # nothing retrained
    assert json.loads((out / "sweep.json").read_text())["chosen"] == summary["chosen"]


@pytest.mark.parametrize(("recipe", "message"), [("lr=1e-3,momentum=0.9", "unknown key 'momentum'"),
                                                 ("lr=fast", "lr=fast is not a float")])
def test_a_bad_recipe_gets_one_line(recipe, message):
    from routines.experiments.sweep import Recipe

    with pytest.raises(SystemExit, match=message):
        Recipe.parse(recipe, epochs=12)
