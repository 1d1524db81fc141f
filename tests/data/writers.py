"""Write a list-file dataset (the built-in one's layout) in the other formats the factory reads: WebDataset tar shards,
a Hugging Face DatasetDict saved on disk, ImageNet's train/val layout."""
from __future__ import annotations

import io
import shutil
import tarfile
from collections.abc import Sequence
from pathlib import Path

from utils.data import IMAGES_DIRNAME, MASKS_DIRNAME, read_class_names, read_list_file


def rows_of(builtin: Path, split: str) -> list[tuple[str, int]]:
    return [(row.path, row.label) for row in read_list_file(builtin / f"{split}.csv")]


def add_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def write_shard(path: Path, samples: Sequence[tuple[str, bytes | None, int | str | None]]) -> Path:
    """One shard of ``(key, image bytes, class)`` samples (a None part is left out), the images as ``<key>.png``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as archive:
        for key, image, label in samples:
            if image is not None:
                add_member(archive, f"{key}.png", image)
            if label is not None:
                add_member(archive, f"{key}.cls", f"{label}\n".encode())
    return path


def write_shards(builtin: Path, out: Path, per_shard: int = 10, splits: Sequence[str] = ("train", "val")) -> Path:
    """``out/<split>/shard-NNNNNN.tar`` of the built-in set's rows in list order: ``<key>.png``, ``<key>.cls``,
    ``<key>.mask.png``, the key the list's path without its suffix; ``classes.txt`` in ``out``."""
    for split in splits:
        rows = rows_of(builtin, split)
        (out / split).mkdir(parents=True)
        for start in range(0, len(rows), per_shard):
            with tarfile.open(out / split / f"shard-{start // per_shard:06d}.tar", "w") as archive:
                for path, label in rows[start:start + per_shard]:
                    key = path.rsplit(".", 1)[0]
                    add_member(archive, f"{key}.png", (builtin / IMAGES_DIRNAME / path).read_bytes())
                    add_member(archive, f"{key}.cls", f"{label}\n".encode())
                    add_member(archive, f"{key}.mask.png", (builtin / MASKS_DIRNAME / path).read_bytes())
    shutil.copy(builtin / "classes.txt", out / "classes.txt")
    return out


def write_hf_dataset(builtin: Path, out: Path) -> Path:
    """A DatasetDict (train, validation) of the built-in set's rows in list order, saved to ``out``: an ``image``
    Image, a ``label`` ClassLabel and a ``mask`` Image column."""
    import datasets

    names = read_class_names(builtin / "classes.txt")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names),
                                  "mask": datasets.Image()})

    def split(name: str) -> datasets.Dataset:
        rows = rows_of(builtin, name)
        return datasets.Dataset.from_dict({
            "image": [str(builtin / IMAGES_DIRNAME / path) for path, _ in rows],
            "label": [label for _, label in rows],
            "mask": [str(builtin / MASKS_DIRNAME / path) for path, _ in rows]}, features=features)

    datasets.DatasetDict({"train": split("train"), "validation": split("val")}).save_to_disk(str(out))
    return out


def write_imagenet_layout(builtin: Path, out: Path) -> tuple[Path, Path]:
    """``out/train/<NN_class>/<file>`` (class folders that sort in label order) and a flat ``out/val`` labelled by
    ``LOC_val_solution.csv``, from the built-in set; and a list file of the training images in the layout's order
    (class folder, then file name), whose rows are the same images and labels."""
    names = read_class_names(builtin / "classes.txt")
    folders = [f"n{label:02d}_{name}" for label, name in enumerate(names)]
    listed = []
    for path, label in rows_of(builtin, "train"):
        target = out / "train" / folders[label] / Path(path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(builtin / IMAGES_DIRNAME / path, target)
        listed.append((target.relative_to(out).as_posix(), label))
    (out / "val").mkdir()
    solution = ["ImageId,PredictionString"]
    for index, (path, label) in enumerate(rows_of(builtin, "val")):
        shutil.copy(builtin / IMAGES_DIRNAME / path, out / "val" / f"val_{index:05d}.png")
        solution.append(f"val_{index:05d},{folders[label]} 1 2 3 4")
    (out / "LOC_val_solution.csv").write_text("\n".join(solution) + "\n")
    train_list = out.parent / f"{out.name}_train.csv"
    train_list.write_text("".join(f"{path},{label}\n" for path, label in sorted(listed)))
    return out, train_list
