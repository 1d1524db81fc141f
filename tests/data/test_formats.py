"""The data formats of large datasets (WebDataset tar shards, Hugging Face datasets on disk, ImageNet's train/val
layout), written from the small built-in set: each reads the same images, labels, class names and masks as the list
files it was written from; a training on each gives the weights of the same training on the list files, and both
evaluation scripts the same predictions and metrics."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import main_INets
import objrecon_imagenet
import recognition_imagenet
from tests.data.writers import write_hf_dataset, write_imagenet_layout, write_shard, write_shards
from utils.data import (
    IMAGES_DIRNAME,
    DataSource,
    Preprocessing,
    build_dataset,
    dataset_format,
    ensure_builtin_dataset,
    training_sources,
)
from utils.data.base import load_rgb
from utils.data.hf import HFDataset
from utils.data.imagenet import ImageNetDataset
from utils.data.shards import ShardDataset

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--model", "resnet18", "--imsize", "32", "--batch_size", "8", "--workers", "0", "--fixed", "--seed", "3",
        "--epochs", "1", "--lr", "2e-3"]


@pytest.fixture(scope="module")
def builtin(tmp_path_factory) -> Path:
    return ensure_builtin_dataset(tmp_path_factory.mktemp("formats") / "b", seed=0, imsize=32, train_per_class=4,
                                  val_per_class=2)


@pytest.fixture(scope="module")
def written(builtin, tmp_path_factory) -> dict:
    """The built-in set in each format: data flags of main_INets.py, of the evaluation scripts (validation data)."""
    out = tmp_path_factory.mktemp("written")
    shards = write_shards(builtin, out / "shards")
    hf = write_hf_dataset(builtin, out / "hf")
    layout, layout_list = write_imagenet_layout(builtin, out / "imagenet")
    images = str(builtin / IMAGES_DIRNAME)
    return {
        "list": {"train": ["--root_data", images, "--path_list", str(builtin / "train.csv"),
                           "--val_list", str(builtin / "val.csv")],
                 "eval": ["--root_data", images, "--path_lbl", str(builtin / "val.csv")]},
        # the formats' own splits: the same flags for training and evaluation
        **{kind: dict.fromkeys(("train", "eval"), flags) for kind, flags in (
            ("wds", ["--dataset", "wds", "--root_data", str(shards)]),
            ("hf", ["--dataset", "hf", "--root_data", str(hf)]),
            ("imagenet", ["--root_data", str(layout)]))},
        # ImageNet's layout orders the training images by class folder: the list of the same images in that order
        "imagenet list": {"train": ["--root_data", str(layout), "--path_list", str(layout_list),
                                    "--val_list", str(builtin / "val.csv"), "--val_root", images]},
        "paths": {"shards": shards, "hf": hf, "imagenet": layout},
    }


def test_each_format_reads_the_images_labels_and_masks_of_its_list(builtin, written):
    paths = written["paths"]
    preprocessing = Preprocessing(32)
    for split, listed in (("train", "train.csv"), ("val", "val.csv")):
        train = split == "train"
        reference = build_dataset(DataSource(root=builtin / IMAGES_DIRNAME, listing=builtin / listed),
                                  preprocessing, train=False)
        sources = {"wds": DataSource("wds", paths["shards"]), "hf": DataSource("hf", paths["hf"])}
        if not train:  # the layout's training images are in class-folder order (its own test below)
            sources["imagenet"] = DataSource("imagenet", paths["imagenet"])
        for kind, source in sources.items():
            source = training_sources(source)[0 if train else 1]
            dataset = build_dataset(source, preprocessing, train=False, num_classes=6)
            assert dataset.targets == reference.targets, kind
            assert len(dataset) == len(reference)
            for row in range(len(dataset)):
                assert torch.equal(dataset[row][0], reference[row][0]), (kind, row)
            if kind != "imagenet":
                assert dataset.classes == reference.classes, kind
                masks, expected = dataset.object_masks([0, 5]), reference.object_masks([0, 5])
                assert torch.equal(masks.load([0, 5], [0, 0], 32, 1.0, True),
                                   expected.load([0, 5], [0, 0], 32, 1.0, True)), kind
    assert [dataset_format(DataSource(kind, root)).dataset for kind, root in
            (("wds", paths["shards"]), ("hf", paths["hf"]), ("imagenet", paths["imagenet"]))] == \
        [ShardDataset, HFDataset, ImageNetDataset]
    shards = build_dataset(DataSource("wds", paths["shards"]), preprocessing, train=False)
    assert shards.samples[0] == ("val/shard-000000.tar:val/disc/00000", 0)
    assert build_dataset(DataSource("hf", paths["hf"]), preprocessing, train=False).samples[1] == \
        ("hf:validation#1", 1)
    # --path_list picks shards (a glob) or a split
    picked = build_dataset(DataSource("wds", paths["shards"], "train/shard-000001.tar"), preprocessing, train=True)
    assert len(picked) == 10 and picked.samples[0][0].startswith("train/shard-000001.tar:")
    assert len(build_dataset(DataSource("hf", paths["hf"], "train"), preprocessing, train=False)) == 24
    layout = build_dataset(DataSource("imagenet", paths["imagenet"]), preprocessing, train=True)
    assert layout.classes[0] == "n00_disc" and layout.samples[0] == ("train/n00_disc/00000.png", 0)


def trained(store: Path, data_flags: list[str]) -> tuple[dict, list[dict]]:
    main_INets.main([*TINY, *data_flags, "--store_dir", str(store)])
    return load_file(str(store / "model.safetensors")), list(csv.DictReader((store / "log.csv").open()))


@pytest.fixture(scope="module")
def list_run(written, tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("list_run") / "run"
    trained(store, written["list"]["train"])
    return store


@pytest.mark.parametrize("kind, reference", [("wds", "list"), ("hf", "list"), ("imagenet", "imagenet list")])
def test_training_on_each_format_equals_training_on_its_list(kind, reference, written, list_run, tmp_path):
    """One epoch of seeded augmentation on the same images in the same order: the same weights to the bit, the same
    losses and validation (the format's own validation split, the list's val.csv)."""
    weights, log = trained(tmp_path / kind, written[kind]["train"])
    if reference == "list":
        expected, expected_log = load_file(str(list_run / "model.safetensors")), \
            list(csv.DictReader((list_run / "log.csv").open()))
    else:
        expected, expected_log = trained(tmp_path / "reference", written[reference]["train"])
    assert weights.keys() == expected.keys()
    for key in weights:
        assert torch.equal(weights[key], expected[key]), key
    fields = ("train_loss", "val_loss", "val_acc")
    assert [{f: row[f] for f in fields} for row in log] == [{f: row[f] for f in fields} for row in expected_log]
    config = json.loads((tmp_path / kind / "config.json").read_text())
    assert config["classes"] == 6


def without(rows: list[dict], column: str) -> list[dict]:
    return [{key: value for key, value in row.items() if key != column} for row in rows]


def evaluated(store: Path, state_root: Path, data_flags: list[str]) -> tuple[list[dict], list[dict]]:
    """recognition_imagenet.py's predictions.csv and objrecon_imagenet.py's metrics.csv (Grad-CAM) rows."""
    common = ["--state_root", str(state_root), "--batch_size", "4", "--workers", "0", *data_flags]
    recognition_imagenet.main([*common, "--store_dir", str(store / "rec")])
    objrecon_imagenet.main([*common, "--store_dir", str(store / "obj"), "--method", "gradcam"])
    return (list(csv.DictReader((store / "rec" / "predictions.csv").open())),
            list(csv.DictReader((store / "obj" / "metrics.csv").open())))


@pytest.fixture(scope="module")
def list_evaluation(written, list_run, tmp_path_factory) -> tuple[list[dict], list[dict]]:
    return evaluated(tmp_path_factory.mktemp("list_evaluation"), list_run, written["list"]["eval"])


@pytest.mark.parametrize("kind", ["wds", "hf", "imagenet"])
def test_evaluation_on_each_format_equals_evaluation_on_its_list(kind, written, list_run, list_evaluation, tmp_path):
    """recognition_imagenet.py's predictions and objrecon_imagenet.py's metrics on the format's validation data
    are the list file's, row for row (the image column aside: each format names its images its own way)."""
    predictions, metrics = evaluated(tmp_path, list_run, written[kind]["eval"])
    expected_predictions, expected_metrics = list_evaluation
    assert len(predictions) == 12 and without(predictions, "image") == without(expected_predictions, "image")
    if kind == "imagenet":  # no object masks in ImageNet's layout: the metrics that need none
        unscored = {"pointing_game", "energy_pointing_game"}
        assert all(row[key] == "" for row in metrics for key in unscored)
        metrics, expected_metrics = (without(without(rows, "pointing_game"), "energy_pointing_game")
                                     for rows in (metrics, expected_metrics))
    else:
        assert all(row["pointing_game"] != "" for row in metrics)
    assert len(metrics) == 12 and without(metrics, "path") == without(expected_metrics, "path")


def test_imagenet_layout_bad_input_is_one_line(tmp_path):
    for path in ("train/n01/a.png", "train/n02/b.png", "val/x.png", "val/y.png"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(b"")
    solution = tmp_path / "LOC_val_solution.csv"
    solution.write_text("ImageId,PredictionString\nx,n02 1 2 3 4\n")
    with pytest.raises(ValueError, match=r"^\S+/val/y.png: no label in \S+LOC_val_solution.csv \(1 of 2 images"):
        ImageNetDataset(tmp_path, "val")
    solution.write_text("ImageId,PredictionString\nx,n02 1 2 3 4\ny,n07 1 2 3 4\n")
    with pytest.raises(ValueError, match=r"LOC_val_solution.csv:3: class n07 is not one of the 2 class folders"):
        ImageNetDataset(tmp_path, "val")
    solution.unlink()
    with pytest.raises(ValueError, match=r"flat validation images need their labels: LOC_val_solution.csv in"):
        ImageNetDataset(tmp_path, "val")
    (tmp_path / "val" / "n03").mkdir()
    (tmp_path / "val" / "n03" / "c.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"val/n03: a class folder that \S+/train does not have"):
        ImageNetDataset(tmp_path, "val")
    assert ImageNetDataset(tmp_path, "train").samples == [("train/n01/a.png", 0), ("train/n02/b.png", 1)]


def test_shards_and_hf_decode_images_as_image_files_do(tmp_path):
    """A 16-bit greyscale PNG (scaled to 8 bits) and a truncated one, in a shard and a saved Hugging Face dataset:
    the pixels of load_rgb on the file, and its one-line error naming the shard and key (or the row)."""
    deep = tmp_path / "deep.png"
    Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).save(deep)
    data = deep.read_bytes()
    write_shard(tmp_path / "shards" / "s.tar", [("deep", data, 0), ("cut", data[:60], 1)])
    datasets.Dataset.from_dict({"image": [{"bytes": data, "path": None}, {"bytes": data[:60], "path": None}],
                                "label": [0, 1]}, features=datasets.Features({
                                    "image": datasets.Image(), "label": datasets.Value("int64")})
                               ).save_to_disk(str(tmp_path / "hf"))
    expected = np.asarray(load_rgb(deep))
    assert expected.max() > 200 and expected.min() < 10  # scaled, not clipped to white
    for dataset, bad in ((ShardDataset(tmp_path / "shards"), f"{tmp_path / 'shards' / 's.tar'}:cut"),
                         (HFDataset(tmp_path / "hf"), "hf:hf#1 (column 'image')")):
        np.testing.assert_array_equal(np.asarray(dataset[0][0]), expected)
        with pytest.raises(OSError, match=rf"^cannot read image {re.escape(bad)}"):
            dataset[1]


def test_a_shard_index_is_read_from_its_cache_until_the_shard_changes(builtin, tmp_path, monkeypatch):
    """The second reading of the shards opens no tar header (the index comes from $CASTREAM_DATA/shard_index), gives
    the same samples, and still checks the classes against --classes; a rewritten shard is indexed anew."""
    monkeypatch.setenv("CASTREAM_DATA", str(tmp_path / "cache"))
    shards = write_shards(builtin, tmp_path / "shards", per_shard=5, splits=("val",))
    first = ShardDataset(shards, "val")
    assert len(list((tmp_path / "cache" / "shard_index").glob("*.npz"))) == len(first.shards)

    with monkeypatch.context() as patched:
        patched.setattr("tarfile.open", lambda *args, **kwargs: pytest.fail("a tar header was read"))
        again = ShardDataset(shards, "val")
        with pytest.raises(ValueError, match=r"\.cls: class \d is outside \[0, 2\) for --classes 2"):
            ShardDataset(shards, "val", num_classes=2)
    assert again.samples == first.samples and np.array_equal(again.where, first.where)
    assert np.array_equal(np.asarray(again[3][0]), np.asarray(first[3][0])) and again[3][1] == first[3][1]

    image, _ = (builtin / "val.csv").read_text().splitlines()[0].rsplit(",", 1)
    write_shard(first.shards[0], [("only", (builtin / IMAGES_DIRNAME / image).read_bytes(), 5)])
    rewritten = ShardDataset(shards, "val")
    assert rewritten.samples[0] == (f"{first.shard_names[0]}:only", 5) and len(rewritten) == len(first) - 4
