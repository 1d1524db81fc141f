"""The built-in multi-label dataset, the default of ``--dataset voc``: one to three of the built-in shapes per
image on the built-in cluttered backgrounds, written in the VOCdevkit layout (:mod:`.voc`): JPEG images, XML
annotations with boxes, small or mostly hidden shapes marked ``difficult``, and the image sets (also per class, as
the devkit writes them)."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from .builtin import BUILTIN_CLASSES, add_sensor_noise, cluttered_background, generated_data_cache, paint_shape
from .generated import ensure_generated
from .lists import CLASSES_FILENAME, write_lines
from .transforms import DEFAULT_CROP_PCT
from .voc import ABSENT, ANNOTATIONS_DIRNAME, DIFFICULT, IMAGE_SETS_DIRNAME, JPEG_DIRNAME, PRESENT

BUILTIN_VOC_VERSION = 1  # bump whenever the generated content changes: the folder name and manifest carry it
BUILTIN_VOC_IMSIZE = 128
SHAPES_PER_IMAGE = (1, 2, 3)
SHAPES_PER_IMAGE_P = (0.35, 0.4, 0.25)
SMALL_P = 0.2  # share of shapes drawn small (and so difficult)
MIN_VISIBLE = 0.5  # a shape with less of its area visible is difficult


def default_builtin_voc_root(seed: int = 0, imsize: int = BUILTIN_VOC_IMSIZE) -> Path:
    """``$CASTREAM_DATA/builtin_voc_v{BUILTIN_VOC_VERSION}_s{seed}_{imsize}``."""
    return generated_data_cache() / f"builtin_voc_v{BUILTIN_VOC_VERSION}_s{seed}_{imsize}"


def render_multilabel_image(rng: np.random.Generator, imsize: int = BUILTIN_VOC_IMSIZE
                            ) -> tuple[np.ndarray, list[dict]]:
    """One image with one to three distinct shapes, later ones drawn over earlier ones.

    Returns (uint8 RGB (imsize, imsize, 3), objects): each object ``{"label", "box", "difficult"}`` with the box of
    its visible part (>= 50% coverage) as VOC writes it, 1-based and inclusive. Shapes lie inside the evaluation's
    centre crop (``DEFAULT_CROP_PCT``), so a label never names a shape the evaluated image has lost. A shape drawn
    small (6-9% of the side in radius) or less than half visible is difficult; a hidden one is left out.
    """
    image = cluttered_background(rng, imsize)
    count = rng.choice(SHAPES_PER_IMAGE, p=SHAPES_PER_IMAGE_P)
    labels = rng.choice(len(BUILTIN_CLASSES), count, replace=False)
    margin = math.ceil(imsize * (1 - DEFAULT_CROP_PCT) / 2)
    drawn = []
    for label in labels:
        small = rng.uniform() < SMALL_P
        radius = rng.uniform(0.06, 0.09) * imsize if small else rng.uniform(0.12, 0.2) * imsize
        cx, cy = rng.uniform(margin + radius, imsize - margin - radius, 2)
        image, alpha = paint_shape(rng, image, BUILTIN_CLASSES[label], cx, cy, radius)
        drawn.append((int(label), small, alpha))
    objects = []
    for k, (label, small, alpha) in enumerate(drawn):
        visible = alpha.copy()
        for _, _, above in drawn[k + 1:]:
            visible *= 1 - above
        ys, xs = np.nonzero(visible >= 0.5)
        if not len(ys):
            continue
        box = (int(xs.min()) + 1, int(ys.min()) + 1, int(xs.max()) + 1, int(ys.max()) + 1)
        hidden = (visible >= 0.5).sum() < MIN_VISIBLE * (alpha >= 0.5).sum()
        objects.append({"label": label, "box": box, "difficult": bool(small or hidden)})
    return add_sensor_noise(rng, image), objects


def _annotation_xml(image_id: str, imsize: int, objects: list[dict]) -> ElementTree.ElementTree:
    root = ElementTree.Element("annotation")
    ElementTree.SubElement(root, "filename").text = f"{image_id}.jpg"
    ElementTree.SubElement(ElementTree.SubElement(root, "source"), "database").text = "ca_stream built-in shapes"
    size = ElementTree.SubElement(root, "size")
    for tag, value in (("width", imsize), ("height", imsize), ("depth", 3)):
        ElementTree.SubElement(size, tag).text = str(value)
    ElementTree.SubElement(root, "segmented").text = "0"
    for obj in objects:
        element = ElementTree.SubElement(root, "object")
        ElementTree.SubElement(element, "name").text = BUILTIN_CLASSES[obj["label"]]
        ElementTree.SubElement(element, "pose").text = "Unspecified"
        ElementTree.SubElement(element, "truncated").text = "0"
        ElementTree.SubElement(element, "difficult").text = str(int(obj["difficult"]))
        box = ElementTree.SubElement(element, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), obj["box"]):
            ElementTree.SubElement(box, tag).text = str(value)
    tree = ElementTree.ElementTree(root)
    ElementTree.indent(tree)
    return tree


def _class_flag(objects: list[dict], label: int) -> int:
    """The devkit's per-class flag of an image: 1 present, 0 only difficult instances, -1 absent."""
    flags = [DIFFICULT if obj["difficult"] else PRESENT for obj in objects if obj["label"] == label]
    return max(flags) if flags else ABSENT


def _generate_builtin_voc(out: Path, seed: int, imsize: int, counts: dict[str, int]) -> None:
    write_lines(out / CLASSES_FILENAME, BUILTIN_CLASSES)
    for folder in (JPEG_DIRNAME, ANNOTATIONS_DIRNAME, IMAGE_SETS_DIRNAME):
        (out / folder).mkdir(parents=True)
    annotated: dict[str, list[tuple[str, list[dict]]]] = {}
    for split_id, (split, count) in enumerate(counts.items()):
        annotated[split] = []
        for index in range(count):
            image_id = f"{split}_{index:05d}"
            # one generator per image: an image does not depend on how many others are made
            image, objects = render_multilabel_image(np.random.default_rng([seed, split_id, index]), imsize)
            Image.fromarray(image).save(out / JPEG_DIRNAME / f"{image_id}.jpg", quality=95)
            _annotation_xml(image_id, imsize, objects).write(out / ANNOTATIONS_DIRNAME / f"{image_id}.xml")
            annotated[split].append((image_id, objects))
    annotated["trainval"] = annotated["train"] + annotated["val"]
    for split, images in annotated.items():
        write_lines(out / IMAGE_SETS_DIRNAME / f"{split}.txt", [image_id for image_id, _ in images])
        for label, name in enumerate(BUILTIN_CLASSES):
            write_lines(out / IMAGE_SETS_DIRNAME / f"{name}_{split}.txt",
                        [f"{image_id} {_class_flag(objects, label):2d}" for image_id, objects in images])


def ensure_builtin_voc(root: Optional[Path] = None, seed: int = 0, imsize: int = BUILTIN_VOC_IMSIZE,
                       train: int = 600, val: int = 200, test: int = 100) -> Path:
    """Generate the built-in multi-label dataset once (reused while the parameters match); return its root, a
    VOCdevkit year folder with the image sets train, val, trainval (train + val) and test, all annotated.

    Deterministic from ``seed``; ``root`` defaults to :func:`default_builtin_voc_root`.
    """
    if min(train, val, test) < 1:
        raise ValueError(f"every split needs at least one image, got train {train}, val {val}, test {test}")
    root = Path(root).expanduser() if root is not None else default_builtin_voc_root(seed, imsize)
    manifest = {"dataset": "ca_stream builtin multi-label shapes (VOCdevkit layout)", "version": BUILTIN_VOC_VERSION,
                "seed": seed, "imsize": imsize, "train": train, "val": val, "test": test,
                "classes": list(BUILTIN_CLASSES)}
    counts = {"train": train, "val": val, "test": test}
    return ensure_generated(root, manifest, lambda out: _generate_builtin_voc(out, seed, imsize, counts))
