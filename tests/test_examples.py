"""Every script of examples/ runs as written, on the built-in data at a small size, and does what it says."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

import objrecon_imagenet

REPO = Path(__file__).resolve().parents[1]


def run_example(name: str, *flags: str) -> str:
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(REPO / "examples" / name), *flags], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def example_runs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("example")
    printed = run_example("build_ca_from_gap.py", "--out", str(out), "--imsize", "32", "--fraction", "0.05",
                          "--gap_epochs", "1", "--ca_epochs", "1", "--workers", "0")
    assert "GAP: best acc" in printed and "CA: best acc" in printed
    return out


def test_build_ca_from_gap_keeps_the_gap_backbone_and_classifier(example_runs):
    gap = load_file(example_runs / "gap" / "model.safetensors")
    ca = load_file(example_runs / "ca" / "model.safetensors")
    shared = [key for key in gap if not key.startswith("stream.")]
    assert shared and all(key in ca for key in shared)
    # frozen: the CA run's backbone and classifier are the GAP run's, bit for bit (BatchNorm statistics too)
    assert all((gap[key] == ca[key]).all() for key in shared)
    assert any(key.startswith("stream.") for key in ca)


def test_explain_batch_draws_three_methods(example_runs, tmp_path):
    out = tmp_path / "explained.png"
    printed = run_example("explain_batch.py", "--run", str(example_runs / "ca"), "--out", str(out), "--images", "4")
    assert "gradcam, scorecam, attention on 4 images" in printed
    with Image.open(out) as image:
        # save_overlay_grid's figure: a row of 2.3 in per image, a column of 2.2 in for the image and each method
        assert image.width / image.height == pytest.approx((2.2 * 4) / (2.3 * 4), rel=0.03)


def test_score_external_maps_scores_a_saved_file_and_another_tools_maps(example_runs, tmp_path):
    maps = np.zeros((3, 8, 8), dtype=np.float32)
    maps[:, 2:6, 2:6] = 1.0
    np.save(tmp_path / "maps.npy", maps)
    printed = run_example("score_external_maps.py", "--run", str(example_runs / "gap"), "--maps",
                          str(tmp_path / "maps.npy"), "--out", str(tmp_path / "scores.csv"))
    rows = list(csv.DictReader((tmp_path / "scores.csv").open()))
    assert [row["index"] for row in rows] == ["0", "1", "2"] and "3 images" in printed
    assert all(0 <= float(row[key]) <= 1 for row in rows for key in ("ad", "ai", "insertion", "deletion"))
    run_example("score_external_maps.py", "--run", str(example_runs / "gap"), "--images", "4", "--out",
                str(tmp_path / "eigencam.csv"))
    assert len(list(csv.DictReader((tmp_path / "eigencam.csv").open()))) == 4


def test_compare_folders_prints_paired_differences(example_runs, tmp_path):
    for pool in ("gap", "ca"):
        objrecon_imagenet.main(["--state_root", str(example_runs / pool), "--store_dir", str(tmp_path / pool),
                                "--method", "gradcam", "--fraction", "0.05", "--workers", "0", "--report_images", "0"])
    printed = run_example("compare_folders.py", str(tmp_path / "gap"), str(tmp_path / "ca"), "--out",
                          str(tmp_path / "compare"))
    assert "ca - gap" in printed and "deletion" in printed
    assert (tmp_path / "compare" / "compare.html").is_file()
