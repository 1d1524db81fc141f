"""Training from Python: settings built without flags, ``train`` returning what the run folder's files say, a resume
through the same call; the flags layer's settings and ``args.yaml`` record."""
import csv
import dataclasses
import json
import math

import pytest
import torch
import yaml
from safetensors.torch import load_file

import main_INets
from models import ModelSettings
from utils.data import DataSource
from utils.training import (
    LossSettings,
    OptimizerSettings,
    RunSettings,
    ScheduleSettings,
    TrainingDataSettings,
    TrainingResult,
    TrainingSettings,
    train,
)
from utils.training.flags import flag_record, settings_from_flags


def small_settings(small_builtin, store_dir, **run) -> TrainingSettings:
    data = TrainingDataSettings(DataSource(root=small_builtin / "images", listing=small_builtin / "train.csv"),
                                val_list=small_builtin / "val.csv", imsize=32, fraction=0.4)
    return TrainingSettings(
        RunSettings(store_dir, batch_size=16, workers=0, seed=1, fixed=True, **run), data=data,
        model=ModelSettings("resnet18", pretrained=False), optimizer=OptimizerSettings(lr=2e-3),
        schedule=ScheduleSettings("multistep", milestones=(1,)), loss=LossSettings(smoothing=0.1))


def test_train_returns_what_the_run_folder_holds(tmp_path, small_builtin):
    settings = small_settings(small_builtin, tmp_path / "run", epochs=2)
    result = train(settings)
    assert isinstance(result, TrainingResult) and result.run_dir == tmp_path / "run"
    assert result.config == json.loads((result.run_dir / "config.json").read_text())
    assert result.config["backbone"] == "resnet18" and result.score_key == "acc"
    rows = list(csv.DictReader((result.run_dir / "log.csv").open()))
    assert [int(row["epoch"]) for row in rows] == [row["epoch"] for row in result.rows] == [1, 2]
    for row, logged in zip(result.rows, rows):
        assert {key: str(value) for key, value in row.items()} == logged
    assert result.last == result.rows[-1]
    scores = [float(row["val_acc"]) for row in rows]
    assert result.best_epoch == scores.index(max(scores)) + 1
    assert math.isclose(result.best_score, max(scores), abs_tol=1e-4)
    best = load_file(str(result.run_dir / "model_best.safetensors"))
    last = load_file(str(result.run_dir / "model.safetensors"))
    assert all(torch.equal(best[k], last[k]) for k in last) == (result.best_epoch == 2)
    # a run started from Python records its settings with the defaults it resolved; the caller's stay as given
    recorded = yaml.safe_load((result.run_dir / "args.yaml").read_text())
    resolved = dataclasses.replace(settings, model=dataclasses.replace(settings.model, heads=1),
                                   loss=dataclasses.replace(settings.loss, criterion="CrossEntropy"))
    assert recorded == resolved.as_record() and recorded["model"]["name"] == "resnet18"
    assert settings.model.heads is None and settings.loss.criterion is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.run.epochs = 3


def test_resume_from_python_continues_the_log(tmp_path, small_builtin):
    first = train(small_settings(small_builtin, tmp_path / "run", epochs=1))
    resumed = train(small_settings(small_builtin, tmp_path / "run", epochs=2, resume="auto"))
    assert resumed.rows[0] == first.rows[0] and [row["epoch"] for row in resumed.rows] == [1, 2]
    assert resumed.best_score >= first.best_score and resumed.best_epoch in (1, 2)
    if resumed.best_epoch == 1:
        assert resumed.best_score == pytest.approx(first.best_score, abs=1e-4)


def test_refused_settings_name_their_flag(tmp_path):
    with pytest.raises(ValueError, match="--resume continues the run in --store_dir and --overwrite replaces it"):
        RunSettings(tmp_path, resume="auto", overwrite=True)
    with pytest.raises(ValueError, match=r"--val_split must be in \[0, 1\), got 1.0"):
        TrainingDataSettings(val_split=1.0)
    with pytest.raises(ValueError, match="--pool mean"):
        ModelSettings(pool="mean")


def test_flags_become_settings_and_args_yaml_records_the_resolved_defaults():
    args = main_INets.build_parser().parse_args(["--dataset", "voc", "--init_from", "runs/gap", "--mixup", "0.2",
                                                 "--milestones", "2", "4", "--amp", "bf16"])
    settings = settings_from_flags(args)
    assert settings.model == ModelSettings("tf_efficientnet_lite0", heads=1, pretrained=False, init_from="runs/gap")
    assert settings.run.store_dir == "runs/tf_efficientnet_lite0_gap_voc"
    assert settings.loss.criterion == "BCELogitsLoss" and settings.loss.mixes
    assert settings.schedule.milestones == (2, 4) and settings.forward.amp == "bf16"
    assert settings.data.source == DataSource("voc") and settings.data.crop_scale == (0.35, 1.0)
    record = flag_record(args, settings)
    assert list(record) == list(vars(args))  # every flag, in the parser's order
    assert {key: record[key] for key in ("model", "heads", "pretrained", "store_dir", "criterion")} == {
        "model": "tf_efficientnet_lite0", "heads": 1, "pretrained": False,
        "store_dir": "runs/tf_efficientnet_lite0_gap_voc", "criterion": "BCELogitsLoss"}
    assert args.model is None and args.criterion is None  # the parsed flags stay as parsed
