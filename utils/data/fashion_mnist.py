"""Fashion-MNIST (real photographs of clothing), exported from Debian's ``dataset-fashion-mnist`` as a generated
dataset folder."""
from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from .generated import IMAGES_DIRNAME, ensure_generated
from .lists import CLASSES_FILENAME, write_lines

PathLike = str | os.PathLike
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "val": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def fashion_mnist_available(source_dir: PathLike = FASHION_MNIST_DIR) -> bool:
    """True when the four Fashion-MNIST idx files are in ``source_dir``."""
    return all((Path(source_dir) / name).is_file() for pair in _FASHION_MNIST_FILES.values() for name in pair)


def fashion_mnist_missing(source_dir: PathLike = FASHION_MNIST_DIR) -> Optional[str]:
    """Why Fashion-MNIST cannot be read from ``source_dir``, in one line; None when its four idx files are there."""
    if fashion_mnist_available(source_dir):
        return None
    return (f"Fashion-MNIST idx files not found in {source_dir} "
            f"(install them with: apt-get install dataset-fashion-mnist, or bash .ci/install_data.sh as root)")


def _read_idx(path: Path, header_bytes: int) -> np.ndarray:
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=header_bytes)


def _generate_fashion_mnist(out: Path, source_dir: Path, per_class: dict[str, int], seed: int, imsize: int) -> None:
    write_lines(out / CLASSES_FILENAME, FASHION_MNIST_CLASSES)
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        images_name, labels_name = _FASHION_MNIST_FILES[split]
        images = _read_idx(source_dir / images_name, 16).reshape(-1, 28, 28)
        labels = _read_idx(source_dir / labels_name, 8)
        chosen = []
        for label in range(len(FASHION_MNIST_CLASSES)):
            candidates = np.flatnonzero(labels == label)
            if count > candidates.size:
                raise ValueError(f"Fashion-MNIST {split} has {candidates.size} images of class {label}, "
                                 f"asked for {count}")
            chosen.extend(rng.choice(candidates, count, replace=False).tolist())
        rows = []
        for index in sorted(chosen):  # original order, so the list interleaves classes
            image = Image.fromarray(images[index]).convert("RGB")
            if imsize != 28:
                image = image.resize((imsize, imsize), Image.Resampling.BICUBIC)
            rel_path = f"{split}/{index:05d}.png"
            (out / IMAGES_DIRNAME / split).mkdir(parents=True, exist_ok=True)
            image.save(out / IMAGES_DIRNAME / rel_path)
            rows.append(f"{rel_path},{labels[index]}")
        write_lines(out / f"{split}.csv", rows)


def prepare_fashion_mnist(
        out_dir: PathLike,
        train_per_class: int = 500,
        val_per_class: int = 100,
        seed: int = 0,
        source_dir: PathLike = FASHION_MNIST_DIR,
        imsize: int = 28,
) -> Path:
    """Export a balanced, seeded Fashion-MNIST subset as RGB PNG files (reused while parameters match).

    train.csv comes from the official training set, val.csv from the official test set.
    """
    source_dir = Path(source_dir)
    missing = fashion_mnist_missing(source_dir)
    if missing:
        raise FileNotFoundError(missing)
    manifest = {
        "dataset": "fashion-mnist", "seed": seed, "imsize": imsize,
        "train_per_class": train_per_class, "val_per_class": val_per_class,
        "classes": list(FASHION_MNIST_CLASSES),
    }
    per_class = {"train": train_per_class, "val": val_per_class}
    return ensure_generated(Path(out_dir).expanduser(), manifest,
                             lambda out: _generate_fashion_mnist(out, source_dir, per_class, seed, imsize))
