"""objrecon_imagenet.py end to end on the shared trained runs (GAP and CA EfficientNet-Lite0 at 96 px on the
built-in dataset): the seed README's example, saved maps == computed maps, 2 processes == 1, RISE's protocol
card, GAP vs CA, and the one-line errors."""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from objrecon_imagenet import main
from tests.helpers import maps_file, one_line_error, read_maps
from utils.data import DataSource, Preprocessing, build_dataset
from utils.evaluation.model import load_trained_model
from utils.evaluation.objrecon import csv_fields
from utils.explain import create_saliency
from utils.faithfulness import predict
from utils.runtime.layout import EvaluationFolder

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[2]
ROWS = [0, 1, 2, 3, 4, 5]          # the built-in val list is index-major: one image of each class
INDEXES = ["--indexes", *map(str, ROWS)]
FLOATS = ("p", "o", "ad", "ag", "insertion", "deletion", "positive_perturbation", "negative_perturbation",
          "energy_pointing_game")
INTS = ("index", "label", "target", "ai", "pointing_game")


def subprocess_env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))


def data_flags(runs: dict) -> list[str]:
    data = Path(runs["data"])
    return ["--root_data", str(data / "images"), "--path_lbl", str(data / "val.csv")]


def make_maps(run: Path, runs: dict, folder: Path, methods: tuple[str, ...], rows=ROWS) -> dict[str, torch.Tensor]:
    """Maps computed here, independently of the CLI, saved in recognition_imagenet.py's format."""
    model, config = load_trained_model(str(run))
    data = Path(runs["data"])
    dataset = build_dataset(DataSource(root=data / "images", listing=data / "val.csv"),
                            Preprocessing(config["imsize"], mean=config["mean"], std=config["std"]), train=False)
    images = torch.stack([dataset[i][0] for i in rows])
    targets = [dataset.targets[i] for i in rows]
    out = {}
    for method in methods:
        out[method] = create_saliency(method, model)(images, targets)
        EvaluationFolder(folder).save_maps(method, out[method], rows, targets, "gt")
    return out


def read_metrics(path: Path) -> list[dict]:
    with (path / "metrics.csv").open(newline="") as file:
        return list(csv.DictReader(file))


def assert_same_metrics(a: list[dict], b: list[dict], atol: float = 1e-6) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x["method"], x["path"]) == (y["method"], y["path"])
        for key in INTS:
            assert x[key] == y[key], (key, x, y)
        for key in FLOATS:
            assert float(x[key]) == pytest.approx(float(y[key]), abs=atol), (key, x["index"], x["method"])


def error_line(argv: list[str]) -> str:
    return one_line_error(main, argv)


# --------------------------------------------------------------------------------------------
# shared evaluations (module scope: each runs once)

@pytest.fixture(scope="module")
def seed_example(trained_runs, tmp_path_factory) -> Path:
    """The README's example as written (minus --use_gpu), in a subprocess, on saved Grad-CAM maps of the GAP run."""
    store = tmp_path_factory.mktemp("objrecon") / "gap"
    make_maps(trained_runs["gap"], trained_runs, store, ("gradcam",))
    result = subprocess.run(
        [sys.executable, "objrecon_imagenet.py", "--state_root", str(trained_runs["gap"]), "--store_dir", str(store),
         *data_flags(trained_runs), "--batch_size", "60", "--model", "tf_efficientnet_lite0", "--classes", "6"],
        cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "gap gradcam" in result.stdout and "AD" in result.stdout
    return store


@pytest.fixture(scope="module")
def ca_maps(trained_runs, tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("ca_maps")
    return folder, make_maps(trained_runs["ca"], trained_runs, folder, ("gradcam", "attention"))


@pytest.fixture(scope="module")
def ca_from_file(trained_runs, ca_maps, seed_example, tmp_path_factory) -> Path:
    """CA run, maps read from files, compared against the GAP run of the seed example."""
    store = tmp_path_factory.mktemp("objrecon") / "ca_file"
    main(["--state_root", str(trained_runs["ca"]), "--store_dir", str(store), "--saliency_dir", str(ca_maps[0]),
          *data_flags(trained_runs), "--method", "gradcam", "attention", "--workers", "0", "--compare",
          str(seed_example)])
    return store


# --------------------------------------------------------------------------------------------
# tests

def test_seed_example_outputs(seed_example) -> None:
    rows = read_metrics(seed_example)
    assert len(rows) == len(ROWS) * 1
    assert list(rows[0]) == list(csv_fields())
    assert [int(r["index"]) for r in rows] == ROWS
    assert [r["label"] for r in rows] == [r["target"] for r in rows]          # ground-truth class by default
    summary = json.loads((seed_example / "summary.json").read_text())
    card = summary["protocol"]
    assert card["name"] == "reference" and card["step_pixels"] == 8 * 96 and card["steps"] == 12
    assert card["blur_kernel"] == 5 and card["class_source"] == "gt" and card["image_size"] == 96
    assert card["num_images"] == len(ROWS) and len(card["data"]["indices_sha256"]) == 16
    assert card["data"]["masks"] is not None                                # the built-in dataset has masks
    assert card["saliency"]["gradcam"]["source"] == "file"
    assert card["model"]["pool"] == "gap" and {"torch", "timm"} <= set(card["versions"])
    results = summary["results"]["gradcam"]
    for key in FLOATS[2:] + ("ai", "pointing_game"):
        assert math.isfinite(results[key]), key
        # the summary is the per-image column's mean, x100
        assert results[key] == pytest.approx(100 * np.mean([float(r[key]) for r in rows]), abs=1e-9), key
    assert len(summary["curves"]["gradcam"]["insertion"]) == 13
    for name in ("curves_gradcam.png", "curves_methods.png"):
        assert (seed_example / name).read_bytes()[:4] == b"\x89PNG"


def test_seed_example_with_use_gpu_fails_in_one_line_without_cuda(trained_runs, tmp_path) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    # in-process (a subprocess would spend ~10 s importing): main() exits with exactly this one line on stderr
    message = error_line(["--state_root", str(trained_runs["gap"]), "--store_dir", str(tmp_path),
                          *data_flags(trained_runs), "--batch_size", "60", "--model", "tf_efficientnet_lite0",
                          "--use_gpu", "--classes", "6"])
    assert message == "error: --use_gpu given but CUDA is not available (leave it out to run on the CPU)"


def test_computed_maps_equal_saved_maps(trained_runs, ca_maps, ca_from_file, tmp_path) -> None:
    store = tmp_path / "computed"
    summary = main(["--state_root", str(trained_runs["ca"]), "--store_dir", str(store), *data_flags(trained_runs),
                    "--method", "gradcam", "attention", *INDEXES, "--batch_size", "60", "--workers", "0",
                    "--save_maps"])
    assert summary["protocol"]["saliency"]["attention"]["source"] == "computed"
    assert_same_metrics(read_metrics(store), read_metrics(ca_from_file))
    for method, maps in ca_maps[1].items():                                  # --save_maps wrote the same maps
        saved = read_maps(store, method)
        assert saved["indices"] == ROWS and saved["class_source"] == "gt"
        assert torch.allclose(saved["maps"], maps, atol=1e-6)


def test_compare_gap_vs_ca(ca_from_file) -> None:
    summary = json.loads((ca_from_file / "summary.json").read_text())
    assert summary["label"] == "ca" and summary["compare"]["label"] == "gap"
    assert summary["compare"]["differences"] == []                          # same protocol, same images
    assert (ca_from_file / "curves_compare.png").read_bytes()[:4] == b"\x89PNG"
    assert len(read_metrics(ca_from_file)) == 2 * len(ROWS)


@pytest.mark.slow  # ~15 s; the gather in dataset order stays in the default run (runtime/test_distributed.py)
def test_two_processes_equal_one(trained_runs, ca_maps, ca_from_file, tmp_path) -> None:
    store = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "objrecon_imagenet.py", "--state_root", str(trained_runs["ca"]), "--store_dir", str(store),
         "--saliency_dir", str(ca_maps[0]), *data_flags(trained_runs), "--method", "gradcam", "attention",
         "--workers", "0", "--batch_size", "2", "--model", "tf_efficientnet_lite0", "--classes", "6"],
        cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # same rows, order and values; floats up to the reassociation of convolutions over other batch shapes
    assert_same_metrics(read_metrics(store), read_metrics(ca_from_file), atol=1e-5)
    summary = json.loads((store / "summary.json").read_text())
    assert summary["run"]["world_size"] == 2
    assert summary["protocol"]["model"]["pool"] == "ca"   # a plain backbone name keeps the run's pooling
    assert summary["protocol"]["data"]["indices_sha256"] == \
        json.loads((ca_from_file / "summary.json").read_text())["protocol"]["data"]["indices_sha256"]


def test_rise_protocol_card(trained_runs, tmp_path) -> None:
    rows = [0, 3]
    summary = main(["--state_root", str(trained_runs["gap"]), "--store_dir", str(tmp_path), *data_flags(trained_runs),
                    "--method", "gradcam", "--protocol", "rise", "--indexes", *map(str, rows), "--workers", "0"])
    card = summary["protocol"]
    assert (card["name"], card["pixels_per_step"], card["step_pixels"]) == ("rise", 224, 224)
    assert (card["blur_kernel"], card["blur_sigma"], card["class_source"]) == (11, 5.0, "pred")
    assert card["steps"] == math.ceil(96 * 96 / 224)
    assert len(summary["curves"]["gradcam"]["deletion"]) == card["steps"] + 1
    # the predicted class is explained and scored
    model, config = load_trained_model(str(trained_runs["gap"]))
    data = Path(trained_runs["data"])
    dataset = build_dataset(DataSource(root=data / "images", listing=data / "val.csv"),
                            Preprocessing(96, mean=config["mean"], std=config["std"]), train=False)
    predicted = predict(model, torch.stack([dataset[i][0] for i in rows])).tolist()
    assert [int(r["target"]) for r in read_metrics(tmp_path)] == predicted


def test_errors_are_one_line(trained_runs, tmp_path) -> None:
    gap = ["--state_root", str(trained_runs["gap"]), *data_flags(trained_runs), "--workers", "0"]
    maps = torch.rand(3, 3, 3)

    empty = tmp_path / "empty"
    message = error_line([*gap, "--store_dir", str(empty)])
    assert str(empty) in message and "recognition_imagenet.py" in message and "--method" in message
    message = error_line([*gap, "--store_dir", str(tmp_path / "out"), "--saliency_dir", str(empty),
                          "--method", "gradcam++"])
    assert str(maps_file(empty, "gradcam++")) in message and "--compute" in message

    nan = tmp_path / "nan"
    bad = maps.clone()
    bad[1, 0, 0] = float("nan")
    EvaluationFolder(nan).save_maps("gradcam", bad, [0, 1, 2], [0, 1, 2], "gt")
    message = error_line([*gap, "--store_dir", str(nan)])
    assert "NaN" in message and "dataset row 1" in message

    counts = tmp_path / "count"
    EvaluationFolder(counts).save_maps("gradcam", maps, [0, 1], [0, 1], "gt")  # 3 maps, 2 rows
    message = error_line([*gap, "--store_dir", str(counts)])
    assert "one dataset index per map" in message

    other = tmp_path / "other"
    # maps of another dataset
    EvaluationFolder(other).save_maps("gradcam", maps, [0, 1, 9999], [0, 1, 2], "gt")
    assert "9999" in error_line([*gap, "--store_dir", str(other)])
    labels = tmp_path / "labels"
    # targets of another list file
    EvaluationFolder(labels).save_maps("gradcam", maps, [0, 1, 2], [5, 1, 2], "gt")
    assert "ground-truth class of dataset row 0" in error_line([*gap, "--store_dir", str(labels)])
    good = tmp_path / "good"
    EvaluationFolder(good).save_maps("gradcam", maps, [0, 1, 2], [0, 1, 2], "gt")
    message = error_line([*gap, "--store_dir", str(good), "--pred"])         # maps explain another class
    assert "ground-truth" in message and "--compute" in message
    assert "--fraction" in error_line([*gap, "--store_dir", str(tmp_path / "x"), "--method", "gradcam",
                                       "--fraction", "2"])
    assert "no map" in error_line([*gap, "--store_dir", str(good), "--indexes", "7"])
    assert "unknown saliency method" in error_line([*gap, "--store_dir", str(tmp_path / "x"), "--method", "nope"])


def test_reads_recognition_output(trained_runs, tmp_path) -> None:
    """recognition_imagenet.py --salient (its README example, in-process) then the seed example on its folder."""
    import recognition_imagenet

    common = ["--state_root", str(trained_runs["gap"]), "--store_dir", str(tmp_path), *data_flags(trained_runs),
              "--batch_size", "60", "--model", "tf_efficientnet_lite0", "--classes", "6"]
    recognition_imagenet.main([*common, "--fraction", "0.025", "--salient", "--workers", "0", "--n_overlays", "0"])
    main(common)
    files = sorted(tmp_path.glob("saliency_*.npz"))
    assert files
    saved = [EvaluationFolder.load_maps(f) for f in files]
    rows = read_metrics(tmp_path)
    assert len(rows) == sum(len(m["indices"]) for m in saved)
    assert [int(r["index"]) for r in rows] == [i for m in saved for i in sorted(m["indices"])]
