"""recognition_imagenet.py and objrecon_imagenet.py on multi-label runs (the shared ``trained_voc_runs``: GAP and CA
EfficientNet-Lite0 on the built-in multi-label set): mAP, one map per image-class pair, sigmoid scoring recorded on
the protocol card, per-class summaries, the pointing game on the class's boxes with its tolerance; and the seed
README's commands of the three scripts with --dataset voc."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import main_INets
import recognition_imagenet
from objrecon_imagenet import main as objrecon_main
from tests.helpers import label_matrix, read_maps
from utils.data import PRESENT, DataSource, Preprocessing, VOCDataset, build_dataset
from utils.evaluation.model import load_trained_model
from utils.explain import create_saliency
from utils.faithfulness import class_average_precision, mean_average_precision, pointing_game

FRACTION = ["--fraction", "0.1", "--seed", "0"]  # 20 of the 200 validation images


@pytest.fixture(scope="module")
def ca_eval(trained_voc_runs, tmp_path_factory) -> dict:
    """recognition (Grad-CAM and the stream's attention) then objrecon from its saliency files, on the CA run."""
    store = tmp_path_factory.mktemp("voc_eval")
    report = recognition_imagenet.main(["--state_root", str(trained_voc_runs["ca"]), "--store_dir", str(store),
                                        "--method", "gradcam", "attention", "--workers", "0", "--n_overlays", "4",
                                        *FRACTION])
    summary = objrecon_main(["--state_root", str(trained_voc_runs["ca"]), "--store_dir", str(store), "--workers", "0"])
    return {"store": store, "report": report, "summary": summary}


def evaluated(runs: dict, report: dict) -> tuple[torch.nn.Module, dict, VOCDataset, list[int]]:
    model, config = load_trained_model(str(runs["ca"]))
    dataset = build_dataset(DataSource("voc", runs["data"]),
                            Preprocessing(config["imsize"], mean=config["mean"], std=config["std"]), train=False)
    rows = [int(r["index"]) for r in csv.DictReader((Path(report["files"]["predictions"])).open())]
    return model, config, dataset, rows


def test_map_and_scores_of_every_class(trained_voc_runs, ca_eval):
    """mAP and per-class AP from the model's logits on the evaluated rows; predictions.csv holds the labels and
    the sigmoid score of every class."""
    model, config, dataset, rows = evaluated(trained_voc_runs, ca_eval["report"])
    report = ca_eval["report"]
    images = torch.stack([dataset[i][0] for i in rows])
    with torch.no_grad():
        logits = model(images)
    labels = label_matrix(dataset)[rows]
    class_ap = [None if ap is None else 100 * ap for ap in class_average_precision(logits.numpy(), labels)]
    assert report["map"] == pytest.approx(mean_average_precision(class_ap), abs=1e-6)
    assert [c["ap"] for c in report["per_class"]] == pytest.approx(class_ap, abs=1e-6)
    assert report["class_score"] == "sigmoid" and report["count"] == 20 and "top1" not in report
    predictions = list(csv.DictReader(Path(report["files"]["predictions"]).open()))
    for k, row in enumerate(predictions):
        scores = [float(row[f"score_{name}"]) for name in config["class_names"]]
        np.testing.assert_allclose(scores, logits[k].sigmoid().numpy(), atol=2e-6)
        assert row["labels"].split() == [str(c) for c in np.flatnonzero(labels[k] == PRESENT)]


def test_one_map_per_image_and_class_present(trained_voc_runs, ca_eval):
    """The saliency files hold one map per (row, class present) pair, in row then class order; each equals the
    method's map computed alone for that image and class."""
    model, _, dataset, rows = evaluated(trained_voc_runs, ca_eval["report"])
    expected = [(row, c) for row in rows for c in np.flatnonzero(label_matrix(dataset)[row] == PRESENT).tolist()]
    assert len(expected) > len(rows)  # several classes in some images
    for method in ("gradcam", "attention"):
        saved = read_maps(ca_eval["store"], method)
        assert list(zip(saved["indices"], saved["targets"])) == expected
        assert saved["class_source"] == "gt" and saved["identity"]["data"]["rows"] == 200
        for position in (0, 1, len(expected) - 1):
            row, label = expected[position]
            alone = create_saliency(method, model)(dataset[row][0][None], [label])
            # a batch and a single image reassociate the float32 convolutions: up to ~1e-5 seen on a fresh machine
            torch.testing.assert_close(saved["maps"][position], alone[0].float(), atol=1e-4, rtol=0)
    assert ca_eval["report"]["saliency"]["num_pairs"] == len(expected)


def test_pred_explains_the_classes_above_the_threshold_or_the_top_k(trained_voc_runs, ca_eval, tmp_path):
    model, _, dataset, rows = evaluated(trained_voc_runs, ca_eval["report"])
    with torch.no_grad():
        scores = model(torch.stack([dataset[i][0] for i in rows])).sigmoid()
    common = ["--state_root", str(trained_voc_runs["ca"]), "--method", "gradcam", "--workers", "0", "--n_overlays",
              "0", "--pred", *FRACTION]
    recognition_imagenet.main([*common, "--store_dir", str(tmp_path / "threshold"), "--pred_threshold", "0.3"])
    saved = read_maps(tmp_path / "threshold", "gradcam")
    expected = [(row, c) for k, row in enumerate(rows) for c in torch.nonzero(scores[k] > 0.3).flatten().tolist()]
    assert list(zip(saved["indices"], saved["targets"])) == expected and saved["class_source"] == "pred"
    recognition_imagenet.main([*common, "--store_dir", str(tmp_path / "top2"), "--pred_topk", "2"])
    saved = read_maps(tmp_path / "top2", "gradcam")
    chosen = {row: [] for row in rows}
    for row, c in zip(saved["indices"], saved["targets"]):
        chosen[row].append(c)
    for k, row in enumerate(rows):
        # two classes per image, the best two: up to the rounding between this batch of all rows and recognition's
        # batches, which may swap near-equal scores (seen on an AMD EPYC Zen 4)
        assert len(chosen[row]) == 2 and chosen[row] == sorted(chosen[row])
        others = [c for c in range(scores.shape[1]) if c not in chosen[row]]
        assert scores[k, chosen[row]].min() >= scores[k, others].max() - 1e-5


def test_metrics_score_each_pair_with_its_sigmoid_recorded_on_the_card(trained_voc_runs, ca_eval):
    """objrecon's rows are the pairs of the saliency files; p is the explained class's sigmoid; the summary averages
    over pairs and per class; the card says sigmoid, pairs and the 15 px pointing tolerance."""
    summary, store = ca_eval["summary"], ca_eval["store"]
    card = summary["protocol"]
    assert card["class_score"] == "sigmoid" and card["task"] == "multi-label" and card["pointing_tolerance"] == 15
    assert card["aggregation"].startswith("mean over image-class pairs")
    assert card["data"]["masks"].startswith("boxes of")
    rows = list(csv.DictReader((store / "metrics.csv").open()))
    saved = read_maps(store, "gradcam")
    gradcam = [r for r in rows if r["method"] == "gradcam"]
    assert [(int(r["index"]), int(r["target"])) for r in gradcam] == list(zip(saved["indices"], saved["targets"]))
    assert card["num_pairs"] == len(gradcam) and card["num_images"] == len(set(saved["indices"]))
    model, _, dataset, _ = evaluated(trained_voc_runs, ca_eval["report"])
    with torch.no_grad():
        logits = model(torch.stack([dataset[int(r["index"])][0] for r in gradcam[:6]]))
    expected = logits.sigmoid().gather(1, torch.tensor([[int(r["target"])] for r in gradcam[:6]]))[:, 0]
    # objrecon's batches have another shape than this one: float32 reassociation (1.5e-5 seen on a fresh machine)
    np.testing.assert_allclose([float(r["p"]) for r in gradcam[:6]], expected.numpy(), atol=1e-4)
    result = summary["results"]["gradcam"]
    assert result["num_pairs"] == len(gradcam)
    for key in ("ad", "insertion", "pointing_game"):
        assert result[key] == pytest.approx(100 * np.mean([float(r[key]) for r in gradcam]), abs=1e-9)
    names = json.loads((trained_voc_runs["ca"] / "config.json").read_text())["class_names"]
    for label, per_class in ((int(t), result["per_class"][names[int(t)]]) for t in {r["target"] for r in gradcam}):
        mine = [float(r["deletion"]) for r in gradcam if int(r["target"]) == label]
        assert per_class["num_pairs"] == len(mine)
        assert per_class["deletion"] == pytest.approx(100 * np.mean(mine), abs=1e-9)


def test_report_and_compare_pages_show_one_item_per_pair(trained_voc_runs, ca_eval, tmp_path):
    """report.html's gallery: one item per image-class pair (named row-class, filtered by the explained class) with
    its thumbnails; compare.html reads the pairs of the GAP run's and the CA run's folders."""
    import re

    from utils.reports.compare import write_compare_page

    store = ca_eval["store"]
    gradcam = [r for r in csv.DictReader((store / "metrics.csv").open()) if r["method"] == "gradcam"]
    page = (store / "report.html").read_text()
    items = re.findall(r'<tr class="image-row" data-index="([^"]+)" data-label="([^"]+)"', page)
    assert items == [(f"{r['index']}-{r['target']}", r["target"]) for r in gradcam]
    for key, _ in items:
        for name in (key, f"{key}_gradcam", f"{key}_attention"):
            assert (store / "report_files" / f"{name}.jpg").stat().st_size > 0
    assert f"{len(gradcam)} image-class pairs x 2 methods" in page
    gap = tmp_path / "gap"
    objrecon_main(["--state_root", str(trained_voc_runs["gap"]), "--store_dir", str(gap), "--method", "gradcam",
                   "--workers", "0", *FRACTION])
    compare = write_compare_page(tmp_path / "pages", [gap, store], ["gap", "ca"]).read_text()
    shown = re.findall(r'<figure class="pair" data-index="(\d+)-(\d+)"', compare)
    assert shown and set(shown) <= {(r["index"], r["target"]) for r in gradcam}


def test_pointing_game_on_the_class_boxes_with_tolerance_in_closed_form(trained_voc_runs):
    """A map peaking at pixel (x, y) hits a box when the Euclidean distance from the pixel to the box is at most 15
    px: max(x0 - x, 0, x - x1)^2 + max(y0 - y, 0, y - y1)^2 <= 15^2, for every pixel of the image, on the class's
    own boxes only (the evaluation geometry is the identity at the image's size with --squash)."""
    dataset = VOCDataset(trained_voc_runs["data"], "val")
    row = next(i for i, a in enumerate(dataset.annotations) if len({o.label for o in a.objects}) > 1)
    annotation = dataset.annotations[row]
    masks = dataset.object_masks([row])
    size = annotation.width
    for label in {o.label for o in annotation.objects}:
        boxes = [tuple(v - 1 for v in o.box) for o in annotation.objects if o.label == label]  # 0-based, inclusive
        mask = masks.load([row], [label], size, 1.0, True)
        ys, xs = np.mgrid[0:size, 0:size]
        hits = []
        for start in range(0, size * size, 1024):  # one map per pixel, peaking there
            pixels = torch.arange(start, min(start + 1024, size * size))
            peaks = torch.zeros(len(pixels), size * size)
            peaks[torch.arange(len(pixels)), pixels] = 1
            hits.append(pointing_game(peaks.view(-1, size, size), mask.expand(len(pixels), size, size), 15))
        hits = torch.cat(hits).view(size, size).numpy()
        distance = np.min([np.hypot(np.maximum(np.maximum(x0 - xs, 0), xs - x1),
                                    np.maximum(np.maximum(y0 - ys, 0), ys - y1)) for x0, y0, x1, y1 in boxes], axis=0)
        np.testing.assert_array_equal(hits, distance <= 15)
        assert (hits & (distance > 0)).any() and not hits.all()


def test_a_multilabel_run_with_single_label_data_is_one_line(trained_voc_runs, tmp_path):
    with pytest.raises(SystemExit) as caught:
        recognition_imagenet.main(["--state_root", str(trained_voc_runs["ca"]), "--store_dir", str(tmp_path),
                                   "--dataset", "imagenet"])
    message = str(caught.value.code)
    assert "--dataset imagenet is single-label data" in message and "multi-label" in message
    assert "\n" not in message


def test_seed_readme_commands_run_with_dataset_voc(tmp_path):
    """The seed README's three commands with --dataset voc and no data flags: the built-in multi-label set (its
    training image set, then its validation image set), multi-label end to end."""
    run, evaluation = tmp_path / "voc_gap", tmp_path / "Evaluation"
    summary = main_INets.main(["--dataset", "voc", "--model", "tf_efficientnet_lite0", "--classes", "6", "--epochs",
                               "1", "--imsize", "64", "--store_dir", str(run), "--batch_size", "16", "--s_iterations",
                               "1", "--fixed", "--seed", "0", "--criterion", "BCELogitsLoss", "--fraction", "0.1",
                               "--workers", "0"])
    assert summary["val_map"] > 0 and (run / "checkpoint_epoch1.pth").is_file()
    report = recognition_imagenet.main(["--dataset", "voc", "--state_root", str(run), "--store_dir", str(evaluation),
                                        "--batch_size", "16", "--model", "tf_efficientnet_lite0", "--classes", "6",
                                        "--fraction", "0.05", "--salient", "--workers", "0"])
    assert report["count"] == 10 and "map" in report and report["localization"]["tolerance_px"] == 15
    result = objrecon_main(["--dataset", "voc", "--state_root", str(run), "--store_dir", str(evaluation),
                            "--batch_size", "16", "--model", "tf_efficientnet_lite0", "--classes", "6",
                            "--workers", "0"])
    assert result["protocol"]["class_score"] == "sigmoid"
    assert result["results"]["gradcam"]["num_pairs"] == report["saliency"]["num_pairs"]
