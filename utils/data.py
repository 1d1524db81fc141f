"""Datasets, list files, transforms and the built-in generated dataset.

Everything goes through real image files on disk:

* list files (``data/*.csv``): one ``relative/path,label`` or ``relative/path label`` per line,
  paths relative to an image root (``--root_data``);
* image folders with one sub-folder per class;
* the built-in dataset (the default when no data is given): shapes on cluttered backgrounds,
  generated once from a seed, with object masks for the pointing game;
* Fashion-MNIST exported from the Debian package ``dataset-fashion-mnist``.

Generated datasets share one layout, so they load like any user data::

    <root>/manifest.json   generation parameters, written last (marks the folder complete)
    <root>/classes.txt     one class name per line
    <root>/train.csv       paths relative to <root>/images
    <root>/val.csv
    <root>/images/...      PNG files
    <root>/masks/...       built-in only: PNG 0/255 object masks, same relative names as images/
"""
from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from .checkpoint import current_umask

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CROP_PCT = 0.875  # 224 / 256, the usual ImageNet evaluation crop

IMAGES_DIRNAME = "images"
MASKS_DIRNAME = "masks"
CLASSES_FILENAME = "classes.txt"
MANIFEST_FILENAME = "manifest.json"
_HEADERS = {("path", "label"), ("file", "label")}

BUILTIN_VERSION = 2  # bump whenever the generated content changes: the folder name and manifest carry it
BUILTIN_CLASSES = ("disc", "square", "triangle", "star", "cross", "ring")
BUILTIN_IMSIZE = 64
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luminance weights
# shapes are drawn near upright: a small CNN trained for a few epochs from scratch cannot also
# learn rotation invariance from a few hundred images per class
MAX_TILT = math.radians(20)

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "val": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

PathLike = str | os.PathLike


# --------------------------------------------------------------------------------------------
# List files

def _parse_list_file(path: PathLike) -> list[tuple[str, int, int]]:
    """Parse a list file into ``(relative_path, label, line_number)`` rows."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"list file not found: {path}")
    rows = []
    first_content_line = True
    # utf-8-sig: list files saved by spreadsheet tools often start with a byte-order mark
    for line_number, raw_line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        line = raw_line.strip()
        if not line:
            continue
        # rsplit keeps commas/spaces inside file names; the label is always the last field
        fields = line.rsplit(",", 1) if "," in line else line.rsplit(None, 1)
        fields = [f.strip() for f in fields]
        if first_content_line and tuple(f.lower() for f in fields) in _HEADERS:
            first_content_line = False
            continue
        first_content_line = False
        try:
            if len(fields) != 2 or not fields[0]:
                raise ValueError
            label = int(fields[1])
        except ValueError:
            raise ValueError(
                f"{path}:{line_number}: expected 'path,label' or 'path label' with an integer label, "
                f"got {line!r}") from None
        rows.append((fields[0], label, line_number))
    if not rows:
        raise ValueError(f"{path}: the list file has no samples")
    return rows


def read_list_file(path: PathLike) -> list[tuple[str, int]]:
    """Read ``relative/path,label`` (or space-separated) lines; blank lines and a header are skipped."""
    return [(rel_path, label) for rel_path, label, _ in _parse_list_file(path)]


def read_class_names(path: PathLike) -> list[str]:
    """Read a ``classes.txt`` file: one class name per line, blank lines ignored."""
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Datasets

def _require_dir(root: PathLike, what: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{what} not found or not a directory: {root}")
    return root


def _check_images_exist(root: Path, rel_paths: Sequence[str], source: str) -> None:
    missing = [p for p in rel_paths if not (root / p).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(rel_paths)} images listed in {source} are missing under {root}; "
            f"first missing: {root / missing[0]}")


def _load_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")  # convert() forces a full decode, so truncation fails here
    except (OSError, ValueError) as err:  # PIL.UnidentifiedImageError is an OSError
        raise OSError(f"cannot read image {path}: {err}") from err


class ImageDataset(Dataset):
    """(image, label) pairs from ``root / relative_path`` for each ``(relative_path, label)`` in ``samples``.

    Attributes: ``root``, ``samples``, ``targets``, ``classes`` (class names or None), ``transform``.
    """

    def __init__(
            self,
            root: Path,
            samples: list[tuple[str, int]],
            transform: Callable | None,
            classes: Sequence[str] | None,
    ) -> None:
        self.root = root
        self.samples = samples
        self.targets = [label for _, label in samples]
        self.classes = list(classes) if classes is not None else None
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | Image.Image, int]:
        rel_path, label = self.samples[index]
        image = _load_rgb(self.root / rel_path)
        if self.transform is not None:
            image = self.transform(image)
        return image, label


class ListDataset(ImageDataset):
    """Images listed in a list file, loaded from ``root / relative_path``.

    Everything that can be checked without decoding images is checked on construction, so a wrong
    ``--root_data``/``--path_list``/``--classes`` or a negative label fails at start-up with the offending file
    and line (``line_numbers`` keeps each sample's line for later checks).
    """

    def __init__(
            self,
            root: PathLike,
            list_file: PathLike,
            transform: Callable | None = None,
            num_classes: int | None = None,
            classes: Sequence[str] | None = None,
    ) -> None:
        root = _require_dir(root, "image root")
        self.list_file = Path(list_file)
        rows = _parse_list_file(self.list_file)
        for _, label, line_number in rows:
            if label < 0:
                raise ValueError(f"{self.list_file}:{line_number}: label {label} is negative; labels are class "
                                 f"indices 0, 1, 2, ...")
            if num_classes is not None and label >= num_classes:
                raise ValueError(
                    f"{self.list_file}:{line_number}: label {label} is outside [0, {num_classes}) "
                    f"for --classes {num_classes}")
        _check_images_exist(root, [p for p, _, _ in rows], str(self.list_file))
        super().__init__(root, [(p, label) for p, label, _ in rows], transform, classes)
        self.line_numbers = [line_number for _, _, line_number in rows]


class ImageFolderDataset(ImageDataset):
    """``root/<class>/<image>`` with one sub-folder per class (sorted names -> labels 0..C-1)."""

    EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")

    def __init__(self, root: PathLike, transform: Callable | None = None, num_classes: int | None = None) -> None:
        root = _require_dir(root, "image folder")
        class_dirs = sorted(d for d in root.iterdir() if d.is_dir())
        if not class_dirs:
            raise ValueError(f"{root}: expected one sub-folder per class, found none")
        if num_classes is not None and len(class_dirs) > num_classes:
            raise ValueError(f"{root} has {len(class_dirs)} class folders, more than --classes {num_classes}")
        samples = [
            (file.relative_to(root).as_posix(), label)
            for label, class_dir in enumerate(class_dirs)
            for file in sorted(class_dir.rglob("*"))
            if file.suffix.lower() in self.EXTENSIONS and file.is_file()
        ]
        if not samples:
            raise ValueError(f"{root}: no images with extensions {', '.join(self.EXTENSIONS)}")
        super().__init__(root, samples, transform, [d.name for d in class_dirs])


# --------------------------------------------------------------------------------------------
# Transforms

def _eval_geometry(imsize: int, crop_pct: float, squash: bool, interpolation: InterpolationMode) -> list:
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    if squash:
        return [T.Resize((imsize, imsize), interpolation=interpolation, antialias=True)]
    return [
        T.Resize(math.floor(imsize / crop_pct), interpolation=interpolation, antialias=True),
        T.CenterCrop(imsize),
    ]


def build_transform(
        imsize: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        train: bool = False,
        crop_pct: float = DEFAULT_CROP_PCT,
        squash: bool = False,
        scale: tuple[float, float] = (0.08, 1.0),
        interpolation: InterpolationMode = InterpolationMode.BILINEAR,
) -> T.Compose:
    """PIL image -> normalised tensor.

    train: RandomResizedCrop(imsize, scale) + horizontal flip.
    eval: resize the short side to ``imsize / crop_pct`` then centre-crop ``imsize``; with
    ``squash=True`` a plain ``Resize((imsize, imsize))`` instead (what the reference evaluated with).
    """
    if train:
        geometry = [T.RandomResizedCrop(imsize, scale=scale, interpolation=interpolation, antialias=True),
                    T.RandomHorizontalFlip()]
    else:
        geometry = _eval_geometry(imsize, crop_pct, squash, interpolation)
    return T.Compose([*geometry, T.ToTensor(), T.Normalize(mean, std)])


def transform_mask(
        mask: np.ndarray,
        imsize: int,
        crop_pct: float = DEFAULT_CROP_PCT,
        squash: bool = False,
) -> torch.Tensor:
    """Apply the evaluation geometry of :func:`build_transform` to an (H, W) mask -> bool (imsize, imsize).

    Nearest-neighbour resampling, so the mask lines up with the evaluated image pixel for pixel.
    """
    geometry = T.Compose(_eval_geometry(imsize, crop_pct, squash, InterpolationMode.NEAREST))
    return geometry(torch.from_numpy(np.asarray(mask, dtype=np.uint8))[None])[0].bool()


def _channel_stats(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    # shaped (C, 1, 1) so they broadcast over (C, H, W) and (N, C, H, W) alike
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return mean_t, std_t


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Pixel space ([0, 1]) -> model input space; (C, H, W) or (N, C, H, W), any device."""
    mean_t, std_t = _channel_stats(x, mean, std)
    return (x - mean_t) / std_t


def denormalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Inverse of :func:`normalize`."""
    mean_t, std_t = _channel_stats(x, mean, std)
    return x * std_t + mean_t


# --------------------------------------------------------------------------------------------
# Generated datasets: written once into a temporary folder, then renamed into place

def _read_manifest(root: Path) -> dict | None:
    try:
        return json.loads((root / MANIFEST_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _ensure_generated(root: Path, manifest: dict, generate: Callable[[Path], None]) -> Path:
    """Return ``root`` if it holds a dataset made with ``manifest``; else run ``generate`` atomically.

    A killed generation leaves only a hidden temporary folder, never a half dataset at ``root``.
    Concurrent callers (e.g. DDP ranks) each generate, and the first rename wins.
    """
    if _read_manifest(root) == manifest:
        return root
    if root.is_dir() and any(root.iterdir()) and _read_manifest(root) is None:
        # never delete a folder that this code did not write
        raise FileExistsError(f"{root} exists and is not a generated dataset (no {MANIFEST_FILENAME}); "
                              f"remove it or choose another root")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes it private; give it the mode a plain mkdir would
    try:
        generate(tmp)
        (tmp / MANIFEST_FILENAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        try:
            os.rename(tmp, root)  # replaces a missing or empty root
        except OSError:
            if _read_manifest(root) == manifest:  # another process finished first
                return root
            stale = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
            os.rename(root, stale / root.name)
            os.rename(tmp, root)
            shutil.rmtree(stale, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


# --------------------------------------------------------------------------------------------
# Built-in dataset: shapes on cluttered backgrounds

def default_builtin_root(seed: int = 0, imsize: int = BUILTIN_IMSIZE) -> Path:
    """``$CASTREAM_DATA/builtin_v{BUILTIN_VERSION}_s{seed}_{imsize}``; ``$CASTREAM_DATA`` defaults to
    ``~/.cache/ca_stream``."""
    base = Path(os.environ.get("CASTREAM_DATA") or Path.home() / ".cache" / "ca_stream").expanduser()
    return base / f"builtin_v{BUILTIN_VERSION}_s{seed}_{imsize}"


def _regular_polygon(cx: float, cy: float, radii: Sequence[float], angle: float) -> list[tuple[float, float]]:
    """Vertices at evenly spaced angles, cycling through ``radii`` (one radius: regular polygon)."""
    n = len(radii)
    return [(cx + r * math.cos(angle + 2 * math.pi * k / n), cy + r * math.sin(angle + 2 * math.pi * k / n))
            for k, r in enumerate(radii)]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, radius: float, tilt: float) -> None:
    """Draw ``shape`` (fill 255) inside the circle of ``radius`` around (cx, cy), ``tilt`` radians from upright."""
    disc_box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if shape == "disc":
        draw.ellipse(disc_box, fill=255)
    elif shape == "ring":
        inner = 0.55 * radius  # a wide hole, so a ring never looks like a disc after downscaling
        draw.ellipse(disc_box, fill=255)
        draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=0)
    elif shape == "square":
        draw.polygon(_regular_polygon(cx, cy, [radius] * 4, tilt + math.pi / 4), fill=255)  # axis-aligned
    elif shape == "triangle":
        draw.polygon(_regular_polygon(cx, cy, [radius] * 3, tilt - math.pi / 2), fill=255)  # apex up
    elif shape == "star":
        draw.polygon(_regular_polygon(cx, cy, [radius, 0.42 * radius] * 5, tilt - math.pi / 2), fill=255)
    elif shape == "cross":
        arm, half_width = 0.95 * radius, 0.3 * radius
        local = [(-half_width, -arm), (half_width, -arm), (half_width, -half_width), (arm, -half_width),
                 (arm, half_width), (half_width, half_width), (half_width, arm), (-half_width, arm),
                 (-half_width, half_width), (-arm, half_width), (-arm, -half_width), (-half_width, -half_width)]
        cos, sin = math.cos(tilt), math.sin(tilt)
        draw.polygon([(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in local], fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {BUILTIN_CLASSES}")


def _cluttered_background(rng: np.random.Generator, imsize: int) -> np.ndarray:
    """Float RGB in [0, 1]: a random two-colour gradient with thin lines and small non-class blobs."""
    # a gentle gradient: clutter, yet the object stays the strongest structure in the image
    start = rng.uniform(0, 1, 3)
    end = np.clip(start + rng.uniform(-0.3, 0.3, 3), 0, 1)
    direction = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:imsize, 0:imsize] / max(imsize - 1, 1)
    t = xs * math.cos(direction) + ys * math.sin(direction)
    t = (t - t.min()) / (t.max() - t.min())
    gradient = start + (end - start) * t[..., None]
    canvas = Image.fromarray(np.round(gradient * 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    line_width = max(1, imsize // 64)
    for _ in range(rng.integers(1, 4)):
        x0, y0, x1, y1 = rng.uniform(0, imsize, 4)
        draw.line((x0, y0, x1, y1), fill=tuple(rng.integers(0, 256, 3).tolist()), width=line_width)
    for _ in range(rng.integers(1, 4)):
        # blobs stay well below the smallest object (30% of the side) so they are never class-like
        cx, cy = rng.uniform(0, imsize, 2)
        rx, ry = rng.uniform(0.02, 0.06, 2) * imsize
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=tuple(rng.integers(0, 256, 3).tolist()))
    return np.asarray(canvas, dtype=np.float64) / 255


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray, min_contrast: float = 0.3) -> np.ndarray:
    """A random colour whose luminance differs from ``background``'s by at least ``min_contrast``.

    Luminance, not RGB distance: a clear light/dark edge is what a CNN picks up first, while hue
    (and whether the object is the darker or the lighter side) stays random.
    """
    background_luma = float(background @ _LUMA)
    darker = max(background_luma - min_contrast, 0.0)  # room below and above the background
    brighter = max(1 - background_luma - min_contrast, 0.0)
    position = rng.uniform(0, darker + brighter)
    target = position if position < darker else 1 - (position - darker)
    colour = rng.uniform(0, 1, 3)
    luma = float(colour @ _LUMA)
    # scale towards black or white: keeps the hue, reaches the target luminance exactly (luma is linear)
    if luma > target:
        return colour * target / luma
    return 1 - (1 - colour) * (1 - target) / (1 - luma)


def render_builtin_image(
        rng: np.random.Generator, shape: str, imsize: int = BUILTIN_IMSIZE, supersample: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """One image: ``shape`` at a random place, scale (30-50% of the side), tilt (+-20 degrees) and colour.

    Returns (uint8 RGB (imsize, imsize, 3), bool mask (imsize, imsize)).
    """
    image = _cluttered_background(rng, imsize)
    radius = rng.uniform(0.15, 0.25) * imsize
    cx, cy = rng.uniform(radius, imsize - radius, 2)
    # drawn supersampled and box-filtered: smooth edges, and the mask is the >= 50% coverage area
    alpha_canvas = Image.new("L", (imsize * supersample, imsize * supersample), 0)
    _draw_shape(ImageDraw.Draw(alpha_canvas), shape, cx * supersample, cy * supersample,
                radius * supersample, rng.uniform(-MAX_TILT, MAX_TILT))
    alpha = np.asarray(alpha_canvas.resize((imsize, imsize), Image.Resampling.BOX), dtype=np.float64) / 255
    mask = alpha >= 0.5
    colour = _contrasting_colour(rng, image[mask].mean(axis=0))
    image = image * (1 - alpha[..., None]) + colour * alpha[..., None]
    image += rng.normal(0, rng.uniform(0.01, 0.03), image.shape)  # sensor-like noise everywhere
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), mask


def _generate_builtin(out: Path, seed: int, imsize: int, per_class: dict[str, int]) -> None:
    _write_lines(out / CLASSES_FILENAME, BUILTIN_CLASSES)
    for split_id, (split, count) in enumerate(per_class.items()):
        rows = []
        # index-major order, so any prefix of the list is class-balanced
        for index in range(count):
            for label, shape in enumerate(BUILTIN_CLASSES):
                # one generator per image: an image does not depend on how many others are made
                rng = np.random.default_rng([seed, split_id, label, index])
                image, mask = render_builtin_image(rng, shape, imsize)
                rel_path = f"{split}/{shape}/{index:05d}.png"
                _save_png(image, out / IMAGES_DIRNAME / rel_path)
                _save_png(mask.astype(np.uint8) * 255, out / MASKS_DIRNAME / rel_path)
                rows.append(f"{rel_path},{label}")
        _write_lines(out / f"{split}.csv", rows)


def ensure_builtin_dataset(
        root: PathLike | None = None,
        seed: int = 0,
        imsize: int = BUILTIN_IMSIZE,
        train_per_class: int = 200,
        val_per_class: int = 50,
) -> Path:
    """Generate the built-in shapes dataset once (reused while the parameters match); return its root.

    Six classes told apart by shape only (colour, place, scale, tilt and background are random),
    deterministic from ``seed``. ``root`` defaults to :func:`default_builtin_root`.
    """
    if train_per_class < 1 or val_per_class < 1:
        raise ValueError(f"train_per_class and val_per_class must be >= 1, got {train_per_class}, {val_per_class}")
    root = Path(root).expanduser() if root is not None else default_builtin_root(seed, imsize)
    manifest = {
        "dataset": "ca_stream builtin shapes", "version": BUILTIN_VERSION, "seed": seed, "imsize": imsize,
        "train_per_class": train_per_class, "val_per_class": val_per_class, "classes": list(BUILTIN_CLASSES),
    }
    per_class = {"train": train_per_class, "val": val_per_class}
    return _ensure_generated(root, manifest, lambda out: _generate_builtin(out, seed, imsize, per_class))


def load_mask(dataset_root: PathLike, relative_path: str) -> np.ndarray:
    """The bool object mask of image ``relative_path`` (a path from train.csv/val.csv) of a built-in dataset."""
    path = Path(dataset_root) / MASKS_DIRNAME / relative_path
    if not path.is_file():
        raise FileNotFoundError(f"mask not found: {path}")
    try:
        with Image.open(path) as mask:
            return np.asarray(mask.convert("L")) >= 128
    except (OSError, ValueError) as err:
        raise OSError(f"cannot read mask {path}: {err}") from err


# --------------------------------------------------------------------------------------------
# Fashion-MNIST from the Debian package

def fashion_mnist_available(source_dir: PathLike = FASHION_MNIST_DIR) -> bool:
    """True when the four Fashion-MNIST idx files are in ``source_dir``."""
    return all((Path(source_dir) / name).is_file() for pair in _FASHION_MNIST_FILES.values() for name in pair)


def _read_idx(path: Path, header_bytes: int) -> np.ndarray:
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=header_bytes)


def _generate_fashion_mnist(out: Path, source_dir: Path, per_class: dict[str, int], seed: int, imsize: int) -> None:
    _write_lines(out / CLASSES_FILENAME, FASHION_MNIST_CLASSES)
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
        _write_lines(out / f"{split}.csv", rows)


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
    if not fashion_mnist_available(source_dir):
        raise FileNotFoundError(f"Fashion-MNIST idx files not found in {source_dir} "
                                f"(install them with: apt-get install dataset-fashion-mnist)")
    manifest = {
        "dataset": "fashion-mnist", "seed": seed, "imsize": imsize,
        "train_per_class": train_per_class, "val_per_class": val_per_class,
        "classes": list(FASHION_MNIST_CLASSES),
    }
    per_class = {"train": train_per_class, "val": val_per_class}
    return _ensure_generated(Path(out_dir).expanduser(), manifest,
                             lambda out: _generate_fashion_mnist(out, source_dir, per_class, seed, imsize))


# --------------------------------------------------------------------------------------------
# CLI helpers

def build_dataset(
        root_data: PathLike | None,
        path_list: PathLike | None,
        imsize: int,
        train: bool,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        num_classes: int | None = None,
        crop_pct: float = DEFAULT_CROP_PCT,
        squash: bool = False,
        builtin_seed: int = 0,
        scale: tuple[float, float] = (0.08, 1.0),
) -> ImageDataset:
    """The dataset behind ``--root_data`` / ``--path_list``.

    * ``root_data`` None: the built-in dataset (generated on first use), its train.csv or val.csv;
    * ``path_list`` given: a list file, resolved from the working directory, else under ``root_data``;
      class names come from a ``classes.txt`` next to it when there is one;
    * otherwise ``root_data`` must hold one sub-folder per class.

    ``scale`` is the training RandomResizedCrop area range.
    """
    transform = build_transform(imsize, mean, std, train=train, crop_pct=crop_pct, squash=squash, scale=scale)
    if root_data is None:
        builtin_root = ensure_builtin_dataset(seed=builtin_seed)
        root_data = builtin_root / IMAGES_DIRNAME
        path_list = builtin_root / ("train.csv" if train else "val.csv")
    elif path_list is None:
        return ImageFolderDataset(root_data, transform, num_classes)
    list_file = Path(path_list)
    if not list_file.is_file() and (Path(root_data) / path_list).is_file():
        list_file = Path(root_data) / path_list
    if not list_file.is_file():
        raise FileNotFoundError(f"--path_list {path_list} not found in the working directory nor under {root_data}")
    classes_file = list_file.parent / CLASSES_FILENAME
    classes = read_class_names(classes_file) if classes_file.is_file() else None
    return ListDataset(root_data, list_file, transform, num_classes, classes=classes)


def subset_indices(n: int, fraction: float, seed: int = 0) -> list[int]:
    """A seeded random ``fraction`` of ``range(n)`` (at least one index), in increasing order."""
    if not 0 < fraction <= 1:
        raise ValueError(f"--fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return list(range(n))
    count = max(1, round(n * fraction))
    return sorted(np.random.default_rng(seed).choice(n, count, replace=False).tolist())


def check_indexes(indexes: Sequence[int], n: int) -> None:
    """Raise if any index is not a valid row of a dataset of size ``n``."""
    for index in indexes:
        if not 0 <= index < n:
            raise ValueError(f"--indexes: index {index} is out of range for a dataset of {n} images")
