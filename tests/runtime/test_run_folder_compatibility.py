"""Run folders written before the package layout of ``utils/`` (tests/fixtures/run_v1, written by commit 309ddfe)
still load, give the same logits, and resume."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

import main_INets
from utils.evaluation.model import load_trained_model
from utils.runtime.layout import RunFolder

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "run_v1"
FLAGS = ["--model", "test_efficientnet", "--pool", "ca", "--imsize", "32", "--fraction", "0.05", "--workers", "0",
         "--batch_size", "16", "--opt", "momentum", "--momentum", "0", "--weight_decay", "0", "--lr", "0.01"]


def test_an_earlier_run_folder_loads_with_the_same_logits():
    model, config = load_trained_model(str(FIXTURE))
    assert (config["backbone"], config["pool"], config["classes"], config["imsize"]) == ("test_efficientnet", "ca",
                                                                                         6, 32)
    torch.manual_seed(0)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(images)
    expected = torch.tensor(json.loads((FIXTURE / "expected_logits.json").read_text())["logits"])
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-6)


def test_an_earlier_run_folder_resumes(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    main_INets.main([*FLAGS, "--epochs", "3", "--store_dir", str(run), "--resume"])
    state = RunFolder.load_state(RunFolder(run).state)
    assert state["epoch"] == 3
    earlier = (FIXTURE / "log.csv").read_text().splitlines()
    now = (run / "log.csv").read_text().splitlines()
    assert len(now) == 4 and now[:3] == earlier
