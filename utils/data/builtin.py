"""The built-in dataset, the default when no data is given: six shape classes on cluttered backgrounds, generated
once from a seed into ``$CASTREAM_DATA``, with object masks for the pointing game."""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .generated import IMAGES_DIRNAME, MASKS_DIRNAME, ensure_generated, save_png
from .lists import CLASSES_FILENAME, write_lines

PathLike = str | os.PathLike
BUILTIN_VERSION = 2  # bump whenever the generated content changes: the folder name and manifest carry it
BUILTIN_CLASSES = ("disc", "square", "triangle", "star", "cross", "ring")
BUILTIN_IMSIZE = 64
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luminance weights
# shapes are drawn near upright: a small CNN trained for a few epochs from scratch cannot also
# learn rotation invariance from a few hundred images per class
MAX_TILT = math.radians(20)


def generated_data_cache() -> Path:
    """Where generated datasets go by default: ``$CASTREAM_DATA``, else ``~/.cache/ca_stream``."""
    return Path(os.environ.get("CASTREAM_DATA") or Path.home() / ".cache" / "ca_stream").expanduser()


def default_builtin_root(seed: int = 0, imsize: int = BUILTIN_IMSIZE) -> Path:
    """``$CASTREAM_DATA/builtin_v{BUILTIN_VERSION}_s{seed}_{imsize}`` (see :func:`generated_data_cache`)."""
    return generated_data_cache() / f"builtin_v{BUILTIN_VERSION}_s{seed}_{imsize}"


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


def cluttered_background(rng: np.random.Generator, imsize: int) -> np.ndarray:
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


def paint_shape(rng: np.random.Generator, image: np.ndarray, shape: str, cx: float, cy: float, radius: float,
                supersample: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """``shape`` painted onto float RGB ``image`` inside the circle of ``radius`` around (cx, cy), at a random tilt
    (+-20 degrees) in a colour contrasting with what it covers.

    Returns (the new image, the shape's coverage in [0, 1] per pixel). Drawn supersampled and box-filtered: smooth
    edges, and coverage >= 0.5 is the shape's mask.
    """
    imsize = image.shape[0]
    alpha_canvas = Image.new("L", (imsize * supersample, imsize * supersample), 0)
    _draw_shape(ImageDraw.Draw(alpha_canvas), shape, cx * supersample, cy * supersample,
                radius * supersample, rng.uniform(-MAX_TILT, MAX_TILT))
    alpha = np.asarray(alpha_canvas.resize((imsize, imsize), Image.Resampling.BOX), dtype=np.float64) / 255
    colour = _contrasting_colour(rng, image[alpha >= 0.5].mean(axis=0))
    return image * (1 - alpha[..., None]) + colour * alpha[..., None], alpha


def add_sensor_noise(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Sensor-like noise everywhere, then float RGB in [0, 1] -> uint8."""
    image = image + rng.normal(0, rng.uniform(0.01, 0.03), image.shape)
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def render_builtin_image(
        rng: np.random.Generator, shape: str, imsize: int = BUILTIN_IMSIZE, supersample: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """One image: ``shape`` at a random place, scale (30-50% of the side), tilt (+-20 degrees) and colour.

    Returns (uint8 RGB (imsize, imsize, 3), bool mask (imsize, imsize)).
    """
    image = cluttered_background(rng, imsize)
    radius = rng.uniform(0.15, 0.25) * imsize
    cx, cy = rng.uniform(radius, imsize - radius, 2)
    image, alpha = paint_shape(rng, image, shape, cx, cy, radius, supersample)
    return add_sensor_noise(rng, image), alpha >= 0.5


def _generate_builtin(out: Path, seed: int, imsize: int, per_class: dict[str, int]) -> None:
    write_lines(out / CLASSES_FILENAME, BUILTIN_CLASSES)
    for split_id, (split, count) in enumerate(per_class.items()):
        rows = []
        # index-major order, so any prefix of the list is class-balanced
        for index in range(count):
            for label, shape in enumerate(BUILTIN_CLASSES):
                # one generator per image: an image does not depend on how many others are made
                rng = np.random.default_rng([seed, split_id, label, index])
                image, mask = render_builtin_image(rng, shape, imsize)
                rel_path = f"{split}/{shape}/{index:05d}.png"
                save_png(image, out / IMAGES_DIRNAME / rel_path)
                save_png(mask.astype(np.uint8) * 255, out / MASKS_DIRNAME / rel_path)
                rows.append(f"{rel_path},{label}")
        write_lines(out / f"{split}.csv", rows)


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
    return ensure_generated(root, manifest, lambda out: _generate_builtin(out, seed, imsize, per_class))
