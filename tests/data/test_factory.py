"""The dataset factory (utils/data/factory.py) on real files: one table from a data source to its format, the
validation data each format has, what the datasets answer themselves (task, masks), and the package's imports."""
from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import utils.data.factory as factory
from utils.data import (
    DATASET_KINDS,
    FORMATS,
    IMAGES_DIRNAME,
    MULTI_LABEL,
    SINGLE_LABEL,
    DatasetFormat,
    DataSource,
    ImageDataset,
    ImageFolderDataset,
    ListDataset,
    Preprocessing,
    VOCDataset,
    build_dataset,
    build_transform,
    dataset_format,
    default_kind,
    ensure_builtin_dataset,
    ensure_builtin_voc,
    kind_task,
    load_mask,
    training_sources,
)

DATA_PACKAGE = Path(__file__).resolve().parents[2] / "utils" / "data"


@pytest.fixture(scope="module")
def builtin_root(tmp_path_factory) -> Path:
    return ensure_builtin_dataset(tmp_path_factory.mktemp("builtin") / "b", seed=0, imsize=32, train_per_class=3,
                                  val_per_class=2)


@pytest.fixture(scope="module")
def devkit(tmp_path_factory) -> Path:
    return ensure_builtin_voc(tmp_path_factory.mktemp("voc") / "VOC", seed=0, imsize=64, train=8, val=6, test=2)


@pytest.fixture
def builtin_defaults(monkeypatch, builtin_root, devkit):
    """The built-in sets of ``DataSource()`` are the small ones above (the default sizes take minutes)."""
    monkeypatch.setattr(factory, "ensure_builtin_dataset", lambda seed: builtin_root)
    monkeypatch.setattr(factory, "ensure_builtin_voc", lambda seed: devkit)


def write_png(path: Path, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def test_each_source_goes_to_its_format(tmp_path, builtin_defaults, devkit):
    write_png(tmp_path / "folder" / "a" / "1.png")
    (tmp_path / "list.csv").write_text("a/1.png,0\n")
    expected = {
        DataSource(): ("built-in shapes", ListDataset),
        DataSource(root=tmp_path / "folder", listing=tmp_path / "list.csv"): ("list file", ListDataset),
        DataSource(root=tmp_path / "folder"): ("image folder", ImageFolderDataset),
        DataSource("voc"): ("built-in multi-label shapes", VOCDataset),
        DataSource("voc", devkit, "val"): ("VOCdevkit", VOCDataset),
    }
    for source, (name, cls) in expected.items():
        assert dataset_format(source).name == name
        dataset = build_dataset(source, Preprocessing(16), train=False)
        assert type(dataset) is cls and dataset[0][0].shape == (3, 16, 16)
        assert dataset.task == kind_task(source.kind)
    assert DATASET_KINDS == ("imagenet", "voc", "wds", "hf")
    assert [kind_task(kind) for kind in DATASET_KINDS] == [SINGLE_LABEL, MULTI_LABEL, SINGLE_LABEL, SINGLE_LABEL]
    assert [default_kind(task) for task in (None, SINGLE_LABEL, MULTI_LABEL)] == ["imagenet", "imagenet", "voc"]


def test_a_bad_kind_is_one_line_naming_the_flag():
    with pytest.raises(ValueError, match=r"^--dataset coco: expected one of imagenet, voc, wds, hf$"):
        DataSource("coco")


def test_preprocessing_is_the_transform_of_its_settings(builtin_root):
    preprocessing = Preprocessing(16, crop_pct=0.8, mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.2], crop_scale=[0.5, 1])
    assert preprocessing.mean == (0.5, 0.4, 0.3) and preprocessing.crop_scale == (0.5, 1) and hash(preprocessing)
    with Image.open(builtin_root / IMAGES_DIRNAME / "val" / "disc" / "00000.png") as image:
        image = image.convert("RGB")
        reference = build_transform(16, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2), crop_pct=0.8)(image)
        assert torch.equal(preprocessing.transform(train=False)(image), reference)
        torch.manual_seed(0)
        trained = preprocessing.transform(train=True)(image)
        torch.manual_seed(0)
        assert torch.equal(trained, build_transform(16, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2), train=True,
                                                    scale=(0.5, 1))(image))


def test_validation_data_of_each_format(tmp_path, builtin_defaults, devkit):
    (tmp_path / "lists").mkdir()
    for name in ("train.csv", "val.csv"):
        (tmp_path / "lists" / name).write_text("a/1.png,0\n")
    listed = DataSource(root=tmp_path, listing=tmp_path / "lists")
    # a folder holding train.csv: its training list and the val.csv beside it
    assert training_sources(listed) == (replace(listed, listing=tmp_path / "lists" / "train.csv"),
                                        replace(listed, listing=tmp_path / "lists" / "val.csv"))
    # --val_list and --val_root win over the list beside
    assert training_sources(listed, tmp_path / "v", "v.csv")[1] == replace(listed, root=tmp_path / "v",
                                                                           listing="v.csv")
    # an image folder has none of its own: part of the training images is held out
    assert training_sources(DataSource(root=tmp_path)) == (DataSource(root=tmp_path), None)
    # the built-in sets and a devkit have their own val split
    assert training_sources(DataSource())[1] == DataSource()
    assert build_dataset(training_sources(DataSource())[1], Preprocessing(16), train=False).list_file.name == "val.csv"
    voc_val = training_sources(DataSource("voc", devkit))[1]
    assert build_dataset(voc_val, Preprocessing(16), train=False).list_file.name == "val.txt"


def test_datasets_answer_their_masks(builtin_root, devkit, tmp_path):
    preprocessing = Preprocessing(32)
    listed = build_dataset(DataSource(root=builtin_root / IMAGES_DIRNAME, listing=builtin_root / "val.csv"),
                           preprocessing, train=False)
    masks = listed.object_masks([0, 3])
    assert masks.origin == str(builtin_root / "masks")
    np.testing.assert_array_equal(masks.mask(3, 0), load_mask(builtin_root, listed.samples[3][0]))
    assert masks.load([0, 3], [0, 0], 32, 1.0, True).shape == (2, 32, 32)
    (builtin_root / "masks" / listed.samples[1][0]).rename(tmp_path / "moved.png")
    try:
        assert listed.object_masks([0, 1]) is None and listed.object_masks([0]) is not None
    finally:
        (tmp_path / "moved.png").rename(builtin_root / "masks" / listed.samples[1][0])
    write_png(tmp_path / "folder" / "a" / "1.png")
    assert ImageFolderDataset(tmp_path / "folder").object_masks([0]) is None
    voc = VOCDataset(devkit, "val")
    label = voc.annotations[0].objects[0].label
    boxes = voc.object_masks([0, 1])
    assert boxes.origin == f"boxes of {devkit / 'Annotations'}"
    np.testing.assert_array_equal(boxes.mask(0, label), voc.annotations[0].class_mask(label))
    voc.annotations[1] = None  # a row without its XML (a list file's image)
    assert voc.object_masks([0, 1]) is None


class FlatFolder(ImageDataset):
    """A toy format: every PNG of a folder holding a ``flat.txt``, all of class 0."""

    def __init__(self, root: Path, transform) -> None:
        super().__init__(Path(root), [(p.name, 0) for p in sorted(Path(root).glob("*.png"))], transform, ["thing"])


def test_a_new_format_is_one_table_entry(tmp_path, monkeypatch):
    for index in range(3):
        write_png(tmp_path / f"{index}.png", 40 * index)
    (tmp_path / "flat.txt").touch()
    entry = DatasetFormat("flat folder", "imagenet", FlatFolder,
                          accepts=lambda s: s.root is not None and (Path(s.root) / "flat.txt").is_file(),
                          build=lambda source, transform, train, num_classes: FlatFolder(source.root, transform),
                          split=lambda source, val_root, val_list: (source, source))
    monkeypatch.setattr(factory, "FORMATS", (entry, *FORMATS))
    source = DataSource(root=tmp_path)
    dataset = build_dataset(source, Preprocessing(8, crop_pct=1.0), train=False)
    assert isinstance(dataset, FlatFolder) and len(dataset) == 3 and dataset.classes == ["thing"]
    assert training_sources(source) == (source, source) and kind_task("imagenet") == SINGLE_LABEL


def test_no_import_loop_and_no_private_name_crosses_a_module():
    """Inside utils/data, a module imports only modules below it (no loop, even inside a function), and never a
    name starting with an underscore from another module."""
    graph = {}
    for path in DATA_PACKAGE.glob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level == 1 or (node.module or "").startswith("utils.data")):
                module = (node.module or "").removeprefix("utils.data").lstrip(".")
                if module:
                    imported.add(module)
                private = [alias.name for alias in node.names if alias.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {module}"
        graph[path.stem] = imported
    visiting, done = [], set()

    def visit(module: str) -> None:
        assert module not in visiting, f"import loop: {' -> '.join(visiting[visiting.index(module):] + [module])}"
        if module in done:
            return
        visiting.append(module)
        for other in graph.get(module, ()):
            visit(other)
        visiting.pop()
        done.add(module)

    for module in graph:
        if module != "__init__":
            visit(module)
