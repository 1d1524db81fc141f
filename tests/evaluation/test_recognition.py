"""recognition_imagenet.py: the README's example, accuracy, saliency files, pointing game, batching, DDP, errors.

Every test reuses the shared ``trained_runs`` fixture (a GAP EfficientNet-Lite0 trained for one epoch and its CA
stream for two, on the built-in dataset at 96x96); nothing is retrained here.
"""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import recognition_imagenet
from models import create_model, data_config, model_config
from tests.helpers import one_line_error, read_maps
from utils.data import DataSource, Preprocessing, build_dataset, read_list_file, subset_indices
from utils.evaluation.model import load_trained_model
from utils.evaluation.rows import evaluated_indices, parse_indexes
from utils.runtime.layout import RunFolder

REPO = Path(__file__).resolve().parents[2]
METHODS = ["gradcam", "attention", "attention_mean", "random"]


def readme_flags(runs: dict, store_dir: Path) -> list[str]:
    """The seed README's example with real values (plus --salient, the 'Evaluation settings' switch)."""
    data = runs["data"]
    return ["--state_root", str(runs["ca"]), "--store_dir", str(store_dir), "--root_data", str(data / "images"),
            "--path_lbl", str(data / "val.csv"), "--batch_size", "16", "--model", "tf_efficientnet_lite0",
            "--classes", "6", "--fraction", "0.25", "--salient"]


def val_size(runs: dict) -> int:
    return len(read_list_file(runs["data"] / "val.csv"))


def run_script(args: list[str], env_extra: dict | None = None, launcher: list[str] | None = None
               ) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_extra or {}))
    command = [*(launcher or [sys.executable]), "recognition_imagenet.py", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def read_predictions(store_dir: Path) -> list[dict]:
    with (Path(store_dir) / "predictions.csv").open(newline="") as file:
        return list(csv.DictReader(file))


def user_error(argv: list[str]) -> str:
    """The message of a run expected to stop on a user error (SystemExit carrying one line)."""
    return one_line_error(recognition_imagenet.main, argv)


@pytest.fixture(scope="module")
def localization_eval(trained_runs, tmp_path_factory) -> dict:
    """The CA run on half the built-in validation list (seeded) with Grad-CAM, both attention maps and random
    maps, evaluated at 192x192: the model was trained at 96x96, where the last feature map is 3x3 and the
    maximum of a map can only fall on one of 9 cells (see test_maps_hit_the_object_...)."""
    store = tmp_path_factory.mktemp("localization")
    report = recognition_imagenet.main(["--state_root", str(trained_runs["ca"]), "--store_dir", str(store),
                                        "--salient", "--method", *METHODS, "--workers", "0", "--batch_size", "60",
                                        "--imsize", "192", "--fraction", "0.5", "--n_overlays", "0"])
    return {"store": store, "report": report}


# --------------------------------------------------------------------------------------------------
# the README's example


def test_readme_example_use_gpu_without_cuda_is_one_line(trained_runs, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    result = run_script([*readme_flags(trained_runs, tmp_path / "gpu"), "--use_gpu"])
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: --use_gpu given but CUDA is not available (leave it out to run on the CPU)"], \
        result.stderr[-2000:]
    assert not (tmp_path / "gpu").exists()


def test_readme_example(trained_runs, tmp_path):
    store = tmp_path / "readme"
    result = run_script(readme_flags(trained_runs, store))  # as written: default --workers 2
    assert result.returncode == 0, result.stderr[-3000:]
    assert "top-1" in result.stdout
    for name in ("predictions.csv", "classification.json", "saliency_gradcam.npz", "overlays.png"):
        assert (store / name).is_file(), name

    rows = read_predictions(store)
    assert list(rows[0]) == ["index", "image", "label", "prediction", "confidence", "nll", "top5", "target"]
    # each image's NLL is -log of its true class's softmax: equal to -log(confidence) where the prediction is right
    for row in rows:
        if row["prediction"] == row["label"]:
            assert float(row["nll"]) == pytest.approx(-np.log(float(row["confidence"])), abs=1e-5)
        else:
            assert float(row["nll"]) > -np.log(float(row["confidence"])) - 1e-6
    maps = read_maps(store, "gradcam")
    expected = round(0.25 * val_size(trained_runs))  # seeded 25% of the validation list
    assert len(rows) == len(maps["maps"]) == len(maps["indices"]) == expected
    assert [int(r["index"]) for r in rows] == maps["indices"]
    assert [int(r["target"]) for r in rows] == maps["targets"] == [int(r["label"]) for r in rows]
    assert maps["class_source"] == "gt" and tuple(maps["maps"].shape[1:]) == (3, 3)
    assert float(maps["maps"].min()) >= 0 and float(maps["maps"].max()) <= 1

    # accuracies against a direct computation with the model on the same seeded subset
    model, config = load_trained_model(str(trained_runs["ca"]))
    data = trained_runs["data"]
    dataset = build_dataset(DataSource(root=data / "images", listing=data / "val.csv"),
                            Preprocessing(config["imsize"], mean=config["mean"], std=config["std"]), train=False)
    indices = subset_indices(len(dataset), 0.25, 0)
    assert [int(r["index"]) for r in rows] == indices
    images = torch.stack([dataset[i][0] for i in indices])
    labels = torch.tensor([dataset[i][1] for i in indices])
    with torch.no_grad():  # in the run's batches of 16: CPU kernels' results depend on the batch size
        logits = torch.cat([model(images[start:start + 16]) for start in range(0, len(indices), 16)])
    top1 = 100.0 * (logits.argmax(1) == labels).sum().item() / len(indices)
    top5 = 100.0 * (logits.topk(5, 1).indices == labels[:, None]).any(1).sum().item() / len(indices)
    report = json.loads((store / "classification.json").read_text())
    assert report["top1"] == pytest.approx(top1, abs=1e-9) and report["top5"] == pytest.approx(top5, abs=1e-9)
    assert report["count"] == expected and report["subset"]["fraction"] == 0.25
    assert [int(r["prediction"]) for r in rows] == logits.argmax(1).tolist()
    assert [r["image"] for r in rows] == [dataset.samples[i][0] for i in indices]
    confidences = np.array([float(r["confidence"]) for r in rows])
    np.testing.assert_allclose(confidences, logits.softmax(1).max(1).values.numpy(), atol=6e-7)
    per_class = {c["name"]: c for c in report["per_class"]}
    assert set(per_class) <= set(config["class_names"]) and sum(c["count"] for c in per_class.values()) == expected


# --------------------------------------------------------------------------------------------------
# saliency quality, batching, distribution


def test_maps_hit_the_object_far_more_often_than_random(localization_eval):
    """Pointing game (tolerance 0) and energy pointing game against the object masks of the built-in dataset.

    Measured with the shared fixture's CA run (150 images at 192x192, 6x6 Grad-CAM / last-block grids, 96x96
    for attention_mean; pointing % / energy %): Grad-CAM 62.7 / 38.5, attention (last block) 12.0 / 7.0,
    attention_mean 34.7 / 22.1, random 8.0 / 10.8; objects cover 10.9% of the image; top-1 74.0%.
    The last block's attention is not asserted: it rests on the background or the distractors as often as on the
    object (the README's reading), and a 2-epoch stream's value is unstable: 26.7 / 17.6 when this test was
    written, 12.0 / 7.0 with the locked versions.
    At the training size (96x96, all 300 images, top-1 97.7%) the last grid is 3x3, whose maximum can only fall
    on 9 cell positions: Grad-CAM 5.0 / 14.3, attention 8.3 / 10.8, attention_mean 23.3 / 20.6, random 6.7 / 10.5,
    so only the finer attention_mean beats random there at the pointing game.
    """
    report = localization_eval["report"]
    located = report["localization"]
    scores = located["methods"]
    print("\npointing game / energy pointing game (%), mean mask area "
          f"{located['mean_mask_area']:.1f}%, top-1 {report['top1']:.1f}%:",
          {name: (round(s["pointing_game"], 1), round(s["energy_pointing_game"], 1)) for name, s in scores.items()})
    assert located["count"] == report["count"] == round(0.5 * report["subset"]["dataset_size"])
    assert located["tolerance_px"] == 0
    random = scores["random"]
    assert random["pointing_game"] < 15 and random["energy_pointing_game"] < 15
    assert scores["gradcam"]["pointing_game"] > max(3 * random["pointing_game"], random["pointing_game"] + 20)
    assert scores["attention_mean"]["pointing_game"] > max(2 * random["pointing_game"], random["pointing_game"] + 8)
    for name in ("gradcam", "attention_mean"):
        assert scores[name]["energy_pointing_game"] > 1.4 * random["energy_pointing_game"], (name, scores)


def test_batched_equals_one_by_one(trained_runs, tmp_path):
    indexes = [str(i) for i in np.linspace(3, val_size(trained_runs) - 1, 8).astype(int)]  # 8 distinct rows
    common = ["--state_root", str(trained_runs["ca"]), "--salient", "--method", *METHODS, "--workers", "0",
              "--indexes", *indexes, "--n_overlays", "0"]
    recognition_imagenet.main([*common, "--store_dir", str(tmp_path / "b8"), "--batch_size", "8"])
    recognition_imagenet.main([*common, "--store_dir", str(tmp_path / "b1"), "--batch_size", "1"])
    # CPU kernels differ with the batch size at the 1e-5 level (the CA stream amplifies it in the logits)
    batched, single = read_predictions(tmp_path / "b8"), read_predictions(tmp_path / "b1")
    assert [int(r["index"]) for r in single] == [int(i) for i in indexes]
    for key in ("index", "image", "label", "prediction", "target"):
        assert [r[key] for r in batched] == [r[key] for r in single], key
    np.testing.assert_allclose([float(r["confidence"]) for r in batched], [float(r["confidence"]) for r in single],
                               atol=1e-3)
    for method in METHODS:
        batched, single = (read_maps(tmp_path / run, method) for run in ("b8", "b1"))
        assert batched["indices"] == single["indices"] and batched["targets"] == single["targets"]
        assert tuple(single["maps"].shape) == ((8, 48, 48) if method == "attention_mean" else (8, 3, 3))
        # measured up to 2.5e-5 (attention_product) between batch 16 and batch 1 on 30 images; the last block's
        # attention is a sharp softmax over 9 positions, which turns the convolutions' batch-size-dependent rounding
        # into 3.5e-4 on an AMD EPYC (Zen 4, one thread; 1.7e-6 for Grad-CAM there)
        torch.testing.assert_close(batched["maps"], single["maps"], atol=5e-4 if method == "attention" else 1e-4,
                                   rtol=0)


def test_channels_last_gives_the_same_predictions_and_maps(trained_runs, tmp_path):
    common = ["--state_root", str(trained_runs["ca"]), "--salient", "--method", "gradcam", "attention",
              "--workers", "0", "--indexes", "0", "5", "17", "40", "--n_overlays", "0"]
    plain = recognition_imagenet.main([*common, "--store_dir", str(tmp_path / "plain")])
    nhwc = recognition_imagenet.main([*common, "--store_dir", str(tmp_path / "nhwc"), "--channels_last"])
    assert nhwc["channels_last"] and not plain["channels_last"]
    assert [r["prediction"] for r in read_predictions(tmp_path / "nhwc")] == \
        [r["prediction"] for r in read_predictions(tmp_path / "plain")]
    for method in ("gradcam", "attention"):
        torch.testing.assert_close(read_maps(tmp_path / "nhwc", method)["maps"],
                                   read_maps(tmp_path / "plain", method)["maps"], atol=1e-4, rtol=0)


@pytest.mark.slow  # ~15 s; the gather in dataset order stays in the default run (runtime/test_distributed.py)
def test_two_processes_equal_one(trained_runs, tmp_path):
    flags = [*readme_flags(trained_runs, tmp_path / "ddp"), "--method", "gradcam", "attention_mean", "random",
             "--workers", "0", "--n_overlays", "2"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = run_script(flags, {"OMP_NUM_THREADS": "1"}, launcher)
    assert result.returncode == 0, result.stderr[-3000:]
    single_flags = [*readme_flags(trained_runs, tmp_path / "single"), "--method", "gradcam", "attention_mean",
                    "random", "--workers", "0", "--n_overlays", "2"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank: reductions may split differently over several threads
    try:
        report = recognition_imagenet.main(single_flags)
    finally:
        torch.set_num_threads(threads)
    assert report["world_size"] == 1
    assert (tmp_path / "ddp" / "predictions.csv").read_text() == (tmp_path / "single" / "predictions.csv").read_text()
    for method in ("gradcam", "attention_mean", "random"):
        ddp, single = (read_maps(tmp_path / run, method) for run in ("ddp", "single"))
        assert ddp["indices"] == single["indices"] and ddp["targets"] == single["targets"]
        torch.testing.assert_close(ddp["maps"], single["maps"], atol=1e-6, rtol=0)
    ddp_report = json.loads((tmp_path / "ddp" / "classification.json").read_text())
    assert ddp_report["world_size"] == 2
    for key in ("top1", "top5", "count", "per_class", "subset"):
        assert ddp_report[key] == report[key], key
    for method, scores in report["localization"]["methods"].items():
        assert ddp_report["localization"]["methods"][method] == pytest.approx(scores, abs=1e-6)
    names = [sorted(p.name for p in (tmp_path / run).iterdir()) for run in ("ddp", "single")]
    assert names[0] == names[1]


# --------------------------------------------------------------------------------------------------
# user errors: one line each


def test_index_out_of_range(trained_runs, tmp_path):
    size = val_size(trained_runs)
    message = user_error(["--state_root", str(trained_runs["ca"]), "--indexes", "0", str(size),
                          "--store_dir", str(tmp_path)])
    assert "--indexes" in message and str(size) in message and "out of range" in message


@pytest.mark.parametrize("fraction", ["0", "1.5", "-0.1"])
def test_fraction_outside_unit_interval(trained_runs, tmp_path, fraction):
    message = user_error(["--state_root", str(trained_runs["ca"]), "--fraction", fraction,
                          "--store_dir", str(tmp_path)])
    assert "--fraction" in message and "(0, 1]" in message


def test_unknown_method_lists_the_known_ones(trained_runs, tmp_path):
    message = user_error(["--state_root", str(trained_runs["ca"]), "--salient", "--method", "gradcam", "nocam",
                          "--store_dir", str(tmp_path)])
    assert "nocam" in message and all(name in message for name in ("gradcam", "scorecam", "attention", "random"))


def test_checkpoint_of_another_class_count(trained_runs, tmp_path):
    message = user_error(["--state_root", str(trained_runs["ca"]), "--classes", "7", "--store_dir", str(tmp_path)])
    assert "7" in message and "6 classes" in message


def test_checkpoint_of_another_class_count_from_a_weights_file(trained_runs, tmp_path):
    # a bare weights file (no config.json next to it): the model is built from the flags, the load refuses
    weights = tmp_path / "weights" / "ca.safetensors"
    weights.parent.mkdir()
    weights.write_bytes((trained_runs["ca"] / "model.safetensors").read_bytes())
    message = user_error(["--state_root", str(weights), "--model", "tf_efficientnet_lite0", "--pool", "ca",
                          "--classes", "7", "--imsize", "96", "--store_dir", str(tmp_path / "out")])
    assert "6 classes" in message and "7" in message


def test_attention_of_a_gap_model_is_one_line(trained_runs, tmp_path):
    message = user_error(["--state_root", str(trained_runs["gap"]), "--salient", "--method", "attention",
                          "--store_dir", str(tmp_path)])
    assert "--pool ca" in message


# --------------------------------------------------------------------------------------------------
# helpers without a model


def test_indexes_from_arguments_or_a_file(tmp_path):
    assert parse_indexes(None) is None
    assert parse_indexes(["5", "2", "5"]) == [2, 5]
    listing = tmp_path / "rows.txt"
    listing.write_text("# rows to explain\n7, 3\n11\n")
    assert parse_indexes([str(listing)]) == [3, 7, 11]
    with pytest.raises(ValueError, match="neither an integer nor a file"):
        parse_indexes(["missing.txt"])
    with pytest.raises(ValueError, match="not an integer"):
        parse_indexes(["1", "x"])


def test_evaluated_indices_are_seeded_and_in_dataset_order():
    assert evaluated_indices(10, 1.0, 0) == list(range(10))
    subset = evaluated_indices(100, 0.3, 4)
    assert subset == sorted(subset) and len(subset) == 30 and subset == evaluated_indices(100, 0.3, 4)
    assert evaluated_indices(100, 0.5, 0, [9, 1, 50, 9]) in ([1, 9], [1, 50], [9, 50])
    with pytest.raises(ValueError, match="out of range"):
        evaluated_indices(10, 1.0, 0, [10])


def test_plain_model_name_keeps_the_runs_pooling_and_a_suffix_overrides_it(tmp_path) -> None:
    """The README passes ``--model resnet18`` with a CA run folder: that must rebuild the CA model, not a GAP one;
    ``resnet18_final`` asks for a different head explicitly (and then the stream weights do not fit)."""
    model = create_model("resnet18", pool="ca", num_classes=3)
    run = RunFolder(tmp_path)
    run.save_weights(run.weights, model.state_dict(), {})
    run.save_config(model_config(model, "resnet18", 32, *data_config("resnet18")))
    rebuilt, config = load_trained_model(str(tmp_path), "resnet18")
    assert config["pool"] == "ca" and rebuilt.pool == "ca"
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), model.state_dict().values()))
    with pytest.raises(ValueError, match="does not fit this ca_last model"):
        load_trained_model(str(tmp_path), "resnet18_final")
