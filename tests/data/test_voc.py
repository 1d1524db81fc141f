"""Pascal VOC: the built-in multi-label set in the VOCdevkit layout, the reader (image sets, annotations, difficult
flags, boxes), the multi-label list and JSON readers, and their one-line errors; on real files in tmp_path."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import utils.data.builtin_voc
from tests.helpers import label_matrix
from utils.data import (
    ABSENT,
    BUILTIN_CLASSES,
    DIFFICULT,
    IMAGE_SETS_DIRNAME,
    PRESENT,
    VOC_CLASSES,
    DataSource,
    Preprocessing,
    VOCDataset,
    build_dataset,
    ensure_builtin_voc,
    read_annotation,
    read_image_set,
    render_multilabel_image,
)

SMALL_VOC = dict(imsize=96, train=24, val=16, test=6)


@pytest.fixture(scope="module")
def devkit(tmp_path_factory) -> Path:
    return ensure_builtin_voc(tmp_path_factory.mktemp("voc") / "VOC", seed=0, **SMALL_VOC)


def copy_devkit(devkit: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "VOC"
    shutil.copytree(devkit, copy)
    return copy


def annotation_xml(*objects: tuple[str, int, tuple[int, int, int, int]], width: int = 96, height: int = 96) -> str:
    """A VOC annotation with (class name, difficult, box) objects."""
    parts = [f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{box[0]}</xmin>"
             f"<ymin>{box[1]}</ymin><xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object>"
             for name, difficult, box in objects]
    return (f"<annotation><size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
            f"{''.join(parts)}</annotation>")


# ------------------------------------------------------------------ the built-in multi-label set

def test_builtin_voc_is_a_vocdevkit_folder(devkit):
    sets = {name: [image_id for image_id, _ in read_image_set(devkit / IMAGE_SETS_DIRNAME / f"{name}.txt")]
            for name in ("train", "val", "trainval", "test")}
    assert [len(sets[name]) for name in ("train", "val", "test")] == [24, 16, 6]
    assert sets["trainval"] == sets["train"] + sets["val"]
    for image_id in sum(sets.values(), []):
        assert (devkit / "JPEGImages" / f"{image_id}.jpg").is_file()
        assert read_annotation(devkit / "Annotations" / f"{image_id}.xml", BUILTIN_CLASSES).objects
    with Image.open(devkit / "JPEGImages" / f"{sets['val'][0]}.jpg") as image:
        assert image.format == "JPEG" and image.size == (96, 96)


def test_reader_labels_follow_the_devkit_class_files_difficult_flags_included(devkit):
    """The reader's label vectors equal the devkit's per-class files (<class>_<set>.txt: 1 / -1 / 0), which the
    generator writes from its own objects: difficult-only classes are 0, not present."""
    for split in ("train", "val", "test"):
        dataset = VOCDataset(devkit, split)
        expected = np.stack([[flag for _, flag in _class_file(devkit / IMAGE_SETS_DIRNAME / f"{name}_{split}.txt")]
                             for name in BUILTIN_CLASSES], axis=1)
        np.testing.assert_array_equal(label_matrix(dataset), expected)
    labels = label_matrix(VOCDataset(devkit, "trainval"))
    assert (labels == DIFFICULT).any() and (labels == PRESENT).any() and (labels == ABSENT).any()
    assert ((labels != ABSENT).sum(1) >= 1).all() and ((labels != ABSENT).sum(1) > 1).any()


def _class_file(path: Path) -> list[tuple[str, int]]:
    return [(line.split()[0], int(line.split()[1])) for line in path.read_text().splitlines()]


def test_difficult_instances_make_a_class_difficult_only_when_no_other_is(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(annotation_xml(("cat", 1, (1, 1, 10, 10)), ("dog", 1, (5, 5, 20, 20)),
                                   ("dog", 0, (30, 30, 40, 40))))
    annotation = read_annotation(path, VOC_CLASSES)
    vector = annotation.label_vector(len(VOC_CLASSES))
    assert vector[VOC_CLASSES.index("cat")] == DIFFICULT and vector[VOC_CLASSES.index("dog")] == PRESENT
    assert sum(v == ABSENT for v in vector) == 18
    dog = annotation.class_mask(VOC_CLASSES.index("dog"))
    # boxes are 1-based and inclusive: (5..20) -> rows and columns 4..19, (30..40) -> 29..39; both boxes of the class
    assert dog.shape == (96, 96) and dog.sum() == 16 * 16 + 11 * 11
    assert dog[4, 4] and dog[19, 19] and not dog[3, 4] and not dog[20, 20] and dog[39, 39] and not dog[40, 40]


def test_boxes_bound_the_visible_shapes(monkeypatch):
    """On a plain background without noise, a box is exactly the bounding box of the pixels more than half covered
    by its shape, and shapes stay inside the evaluation's centre crop."""
    grey = 0.5
    monkeypatch.setattr(utils.data.builtin_voc, "cluttered_background",
                        lambda rng, size: np.full((size, size, 3), grey))
    monkeypatch.setattr(utils.data.builtin_voc, "add_sensor_noise",
                        lambda rng, image: np.round(np.clip(image, 0, 1) * 255).astype(np.uint8))
    checked = 0
    for seed in range(40):
        image, objects = render_multilabel_image(np.random.default_rng(seed), 96)
        if len(objects) != 1:
            continue
        difference = np.abs(image.astype(np.float64) / 255 - grey).sum(-1)
        ys, xs = np.nonzero(difference > difference.max() / 2)
        box = objects[0]["box"]
        assert abs(box[0] - (xs.min() + 1)) <= 1 and abs(box[2] - (xs.max() + 1)) <= 1, (seed, box)
        assert abs(box[1] - (ys.min() + 1)) <= 1 and abs(box[3] - (ys.max() + 1)) <= 1, (seed, box)
        assert min(box) >= 6 and max(box) <= 90  # inside the 84 px centre crop of 96
        checked += 1
    assert checked >= 5


def test_builtin_voc_is_deterministic_and_reused(tmp_path, devkit):
    again = ensure_builtin_voc(tmp_path / "again", seed=0, **SMALL_VOC)
    other = ensure_builtin_voc(tmp_path / "other", seed=1, **SMALL_VOC)
    name = "JPEGImages/val_00003.jpg"
    assert (again / name).read_bytes() == (devkit / name).read_bytes() != (other / name).read_bytes()
    assert ensure_builtin_voc(again, seed=0, **SMALL_VOC) == again


def test_dataset_items_are_label_vectors(devkit):
    dataset = build_dataset(DataSource("voc", devkit), Preprocessing(64), train=False)
    assert isinstance(dataset, VOCDataset) and dataset.list_file.name == "val.txt" and dataset.classes == list(
        BUILTIN_CLASSES)
    image, labels = dataset[0]
    assert image.shape == (3, 64, 64) and labels.dtype == torch.int8
    assert labels.tolist() == list(dataset.targets[0]) and dataset.task == "multi-label"
    assert build_dataset(DataSource("voc", devkit, "trainval"), Preprocessing(64), train=True).list_file.name == \
        "trainval.txt"
    assert build_dataset(DataSource("voc", devkit), Preprocessing(64), train=True).list_file.name == "train.txt"


# ------------------------------------------------------------------ multi-label lists

def test_list_file_and_json_give_the_labels_of_the_annotations(devkit, tmp_path):
    """The same images as a multi-label list (class names and indices mixed) and as the reference's JSON list:
    every class with an instance is present (a list carries no difficult flags), and the boxes still come from the
    annotations."""
    reference = VOCDataset(devkit, "val")
    present = [[c for c, flag in enumerate(vector) if flag != ABSENT] for vector in reference.targets]
    listing = tmp_path / "val.csv"
    listing.write_text("path,labels\n" + "".join(
        f"{Path(name).stem},{' '.join(BUILTIN_CLASSES[c] if c % 2 else str(c) for c in labels)}\n"
        for (name, _), labels in zip(reference.samples, present)))
    vectors = {Path(name).stem + ".jpg": [1 if c in labels else 0 for c in range(6)]
               for (name, _), labels in zip(reference.samples, present)}
    (tmp_path / "val.json").write_text(json.dumps(vectors))
    for path in (listing, tmp_path / "val.json"):
        dataset = VOCDataset(devkit, path)
        assert [name for name, _ in dataset.samples] == [name for name, _ in reference.samples]
        assert label_matrix(dataset).tolist() == [[PRESENT if c in labels else ABSENT for c in range(6)]
                                                 for labels in present]
        np.testing.assert_array_equal(dataset.class_mask(3, present[3][0]), reference.class_mask(3, present[3][0]))


# ------------------------------------------------------------------ bad input: one line naming the file

def write_xml(root: Path, image_id: str, text: str) -> Path:
    path = root / "Annotations" / f"{image_id}.xml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("fault", ["no objects", "unknown class", "missing JPEG", "id without annotation",
                                   "list class name", "list class index", "json length", "image set",
                                   "inverted box", "box below ymin", "box outside the image", "empty JPEG"])
def test_bad_input_is_one_line_naming_the_file(devkit, tmp_path, fault):
    root = copy_devkit(devkit, tmp_path)
    first = read_image_set(root / IMAGE_SETS_DIRNAME / "val.txt")[0][0]
    listing = "val"
    if fault == "no objects":
        named = write_xml(root, first, annotation_xml())
        expected = "no <object>"
    elif fault == "unknown class":
        named = write_xml(root, first, annotation_xml(("unicorn", 0, (1, 1, 5, 5))))
        expected = "object class 'unicorn' is not one of the 6 classes"
    elif fault == "inverted box":
        named = write_xml(root, first, annotation_xml(("disc", 0, (2, 2, 40, 40)), ("square", 0, (30, 5, 10, 50))))
        expected = "object 2 ('square'): its box (xmin 30, ymin 5, xmax 10, ymax 50) has xmax < xmin"
    elif fault == "box below ymin":
        named = write_xml(root, first, annotation_xml(("disc", 0, (2, 40, 40, 20))))
        expected = "object 1 ('disc'): its box (xmin 2, ymin 40, xmax 40, ymax 20) has ymax < ymin"
    elif fault == "box outside the image":
        named = write_xml(root, first, annotation_xml(("disc", 0, (2, 2, 97, 40))))
        expected = "object 1 ('disc'): its box (xmin 2, ymin 2, xmax 97, ymax 40) lies outside the 96x96 image"
    elif fault == "empty JPEG":
        named = root / IMAGE_SETS_DIRNAME / "val.txt"
        (root / "JPEGImages" / f"{first}.jpg").write_bytes(b"")
        expected = f"val.txt:1: image {root / 'JPEGImages' / first}.jpg is empty (0 bytes)"
    elif fault == "missing JPEG":
        named = root / "JPEGImages" / f"{first}.jpg"
        named.unlink()
        expected = "missing"
    elif fault == "id without annotation":
        (root / "Annotations" / f"{first}.xml").unlink()
        named = root / IMAGE_SETS_DIRNAME / "val.txt"
        expected = f":1: image '{first}' has no annotation"
    elif fault == "list class name":
        named = listing = tmp_path / "list.csv"
        named.write_text(f"{first},disc\n{first},disc unicorn\n")
        expected = ":2: class 'unicorn' is not one of the 6 classes"
    elif fault == "list class index":
        named = listing = tmp_path / "list.csv"
        named.write_text(f"{first},6\n")
        expected = ":1: label 6 is outside [0, 6)"
    elif fault == "json length":
        named = listing = tmp_path / "list.json"
        named.write_text(json.dumps({first: [1, 0, 0]}))
        expected = "expected 6 numbers"
    else:
        named, listing = root / IMAGE_SETS_DIRNAME / "nothing.txt", "nothing"
        expected = "neither an image set"
        named = root / IMAGE_SETS_DIRNAME
    with pytest.raises((ValueError, OSError)) as caught:
        VOCDataset(root, listing)
    message = str(caught.value)
    assert str(named) in message and expected in message and "\n" not in message, message


def test_classes_must_match_the_devkit(devkit):
    with pytest.raises(ValueError, match=r"--classes 20, but .* has 6 classes"):
        VOCDataset(devkit, "val", num_classes=20)
    with pytest.raises(FileNotFoundError, match="not a VOCdevkit year folder"):
        VOCDataset(devkit / "Annotations", "val")
