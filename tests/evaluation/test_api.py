"""The evaluation pipelines from Python: settings built without flags, recognise and evaluate returning result
objects that match the files they wrote, and the scripts' flags turned into the same settings.

Reuses the shared ``trained_runs`` fixture (the CA stream of a GAP EfficientNet-Lite0 on the built-in dataset)."""
import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

import objrecon_imagenet
import recognition_imagenet
from models import ModelSettings
from utils.evaluation import (
    DataSubset,
    EvaluatedData,
    EvaluationSettings,
    RecognitionSettings,
    Saliency,
    TrainedModel,
    compare,
    evaluate,
    recognise,
)
from utils.evaluation.flags import evaluation_settings, recognition_settings
from utils.faithfulness import METRICS
from utils.runtime.forward import ForwardSettings
from utils.runtime.layout import EvaluationFolder

METHODS = ("gradcam", "attention")


def same_content(returned: dict, path) -> bool:
    """Whether a report file holds what a pipeline returned (the file adds the library versions)."""
    written = json.loads(path.read_text())
    del written["versions"]
    return json.dumps(written, sort_keys=True) == json.dumps(returned, sort_keys=True)


def test_flags_become_the_same_settings(tmp_path) -> None:
    indexes = tmp_path / "rows.txt"
    indexes.write_text("7, 3\n3 # again\n")
    flags = ["--state_root", "runs/ca", "--model", "resnet18_stream", "--imsize", "96", "--fraction", "0.5",
             "--indexes", str(indexes), "--batch_size", "8", "--workers", "0", "--method", "gradcam", "attention",
             "--amp", "bf16", "--pred", "--pointing_tolerance", "4"]
    model = TrainedModel("runs/ca", ModelSettings("resnet18_stream"))  # objrecon has no --pretrained
    data = EvaluatedData(imsize=96, subset=DataSubset(0.5, indexes=(3, 7)), batch_size=8, workers=0)
    forward = ForwardSettings(amp="bf16", chunk=8)
    recognition = recognition_settings(recognition_imagenet.build_parser().parse_args(flags))
    with_flag = TrainedModel("runs/ca", ModelSettings("resnet18_stream", pretrained=False))  # --pretrained absent
    assert recognition == RecognitionSettings(with_flag, data, Saliency(METHODS, class_source="pred"), forward,
                                              pointing_tolerance=4.0)
    argv = [*flags[:-2], "--protocol", "rise", "--save_maps", "--report_images", "0"]
    evaluation = evaluation_settings(objrecon_imagenet.build_parser().parse_args(argv), argv)
    assert evaluation == EvaluationSettings(model, data, Saliency(METHODS, class_source="pred"), forward,
                                            protocol="rise", save_maps=True, report_images=0, argv=tuple(argv))
    with pytest.raises(dataclasses.FrozenInstanceError):
        evaluation.data.subset.fraction = 1.0  # nothing changes the settings once made


@pytest.mark.parametrize("bad, message", [
    (lambda: DataSubset(fraction=0), "--fraction must be in (0, 1], got 0"),
    (lambda: EvaluatedData(batch_size=0), "--batch_size must be >= 1, got 0"),
    (lambda: RecognitionSettings(TrainedModel("runs/ca"), n_overlays=-1), "--n_overlays must be >= 0, got -1"),
    (lambda: EvaluationSettings(TrainedModel("runs/ca"), report_images=-2), "--report_images must be >= 0"),
])
def test_bad_settings_are_one_line(bad, message) -> None:
    with pytest.raises(ValueError) as caught:
        bad()
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_recognise_and_evaluate_from_python(trained_runs, tmp_path) -> None:
    model = TrainedModel(trained_runs["ca"])
    data = EvaluatedData(subset=DataSubset(fraction=0.05), batch_size=16, workers=0)
    settings = RecognitionSettings(model, data, Saliency(METHODS), store_dir=tmp_path / "py", n_overlays=2)
    recognition = recognise(settings)

    report = recognition.report
    assert same_content(report, recognition.report_path)
    assert recognition.report_path == tmp_path / "py" / "classification.json"
    with recognition.predictions.open(newline="") as file:
        predictions = list(csv.DictReader(file))
    assert len(predictions) == report["count"] == report["subset"]["evaluated"] == 15
    top1 = 100 * np.mean([row["prediction"] == row["label"] for row in predictions])
    assert recognition.top1 == pytest.approx(top1) and recognition.mean_ap is None
    assert recognition.overlays.is_file() and set(recognition.maps) == set(METHODS)
    for method, path in recognition.maps.items():
        saved = EvaluationFolder.load_maps(path)
        assert list(saved["indices"]) == [int(row["index"]) for row in predictions]
        assert saved["maps"].shape[0] == len(predictions) and saved["method"] == method

    # the script with the same flags writes the same predictions and maps
    cli = tmp_path / "cli"
    recognition_imagenet.main(["--state_root", str(trained_runs["ca"]), "--fraction", "0.05", "--batch_size", "16",
                               "--workers", "0", "--method", *METHODS, "--n_overlays", "2", "--store_dir", str(cli)])
    assert (cli / "predictions.csv").read_bytes() == recognition.predictions.read_bytes()
    for path in recognition.maps.values():
        assert torch.equal(EvaluationFolder.load_maps(cli / path.name)["maps"],
                           EvaluationFolder.load_maps(path)["maps"])

    # every row of the saved maps (a fraction would sample them again, as objrecon_imagenet.py's --fraction does)
    # and forwards chunked as the script's (--batch_size): the metrics' forwards round by chunk size
    evaluation = evaluate(EvaluationSettings(model, dataclasses.replace(data, subset=DataSubset()),
                                             forward=ForwardSettings(chunk=16), store_dir=tmp_path / "py",
                                             report_images=3))
    assert same_content(evaluation.summary, evaluation.summary_path)
    assert evaluation.folder == tmp_path / "py" and evaluation.compare_page is None and evaluation.saved_maps == {}
    assert evaluation.report_page.is_file() and all(path.is_file() for path in evaluation.curves.values())
    assert evaluation.summary["run"]["argv"] is None
    rows = evaluation.read_metrics()
    assert len(rows) == len(METHODS) * len(predictions)
    for method in METHODS:
        scored = [row for row in rows if row["method"] == method]
        assert [int(row["index"]) for row in scored] == [int(row["index"]) for row in predictions]
        for metric in METRICS:
            values = [float(row[metric.key]) for row in scored if row[metric.key] != ""]
            if values:
                assert evaluation.results[method][metric.key] == pytest.approx(metric.scale * np.mean(values))

    # the script scores the script's maps alike and compares with the Python run, as compare() does
    summary = objrecon_imagenet.main(["--state_root", str(trained_runs["ca"]), "--batch_size", "16", "--workers",
                                      "0", "--store_dir", str(cli), "--label", "cli",
                                      "--report_images", "0", "--compare", str(tmp_path / "py")])
    assert (cli / "metrics.csv").read_bytes() == evaluation.metrics.read_bytes()
    assert json.dumps(summary["results"]) == json.dumps(evaluation.results) and (cli / "compare.html").is_file()
    comparison = compare([tmp_path / "py", cli], tmp_path / "compare")
    assert comparison.groups == {"ca": [tmp_path / "py"], "cli": [cli]} and comparison.baseline == "ca"
    assert comparison.page == tmp_path / "compare" / "compare.html" and comparison.page.is_file()
    assert comparison.curves.is_file()
    assert {(row.method, row.label) for row in comparison.table} == {(m, label) for m in METHODS
                                                                     for label in ("ca", "cli")}
    assert comparison.differences and all(d.label == "cli" and d.result.mean == 0 for d in comparison.differences)
