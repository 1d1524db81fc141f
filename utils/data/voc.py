"""Pascal VOC: the VOCdevkit layout, its annotations, and the multi-label dataset over it::

    <root>/JPEGImages/<id>.jpg
    <root>/Annotations/<id>.xml          objects: class name, difficult flag, box (1-based, inclusive)
    <root>/ImageSets/Main/<set>.txt      image ids of train, val, trainval, test
    <root>/classes.txt                   optional: the class names, one per line (default: the 20 VOC classes)

``<root>`` is a year folder such as ``VOCdevkit/VOC2012``. Label vectors follow the devkit's ground truth
(``VOCevalcls``): 1 = present, -1 = absent, 0 = only difficult instances (left out of that class's AP).
"""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .base import MULTI_LABEL, ImageDataset, PathLike, check_images_exist, require_dir
from .lists import CLASSES_FILENAME, read_class_names, read_label_json, read_multilabel_list
from .masks import ObjectMasks

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
JPEG_DIRNAME = "JPEGImages"
ANNOTATIONS_DIRNAME = "Annotations"
IMAGE_SETS_DIRNAME = "ImageSets/Main"
IMAGE_SETS = ("train", "val", "trainval", "test")
PRESENT, ABSENT, DIFFICULT = 1, -1, 0


@dataclass(frozen=True)
class VOCObject:
    label: int
    box: tuple[int, int, int, int]  # xmin, ymin, xmax, ymax: 1-based pixel indices, inclusive (VOC's convention)
    difficult: bool


@dataclass(frozen=True)
class VOCAnnotation:
    path: Path
    width: int
    height: int
    objects: tuple[VOCObject, ...]

    def label_vector(self, num_classes: int) -> tuple[int, ...]:
        """1 where a non-difficult instance is present, 0 where every instance is difficult, -1 elsewhere."""
        vector = [ABSENT] * num_classes
        for obj in self.objects:
            vector[obj.label] = max(vector[obj.label], DIFFICULT if obj.difficult else PRESENT)
        return tuple(vector)

    def class_mask(self, label: int) -> np.ndarray:
        """(height, width) bool: the union of the boxes of class ``label`` (difficult ones included)."""
        mask = np.zeros((self.height, self.width), dtype=bool)
        for obj in self.objects:
            if obj.label == label:
                xmin, ymin, xmax, ymax = obj.box
                mask[max(ymin - 1, 0):ymax, max(xmin - 1, 0):xmax] = True
        return mask


def _text(element: ElementTree.Element, tag: str, path: Path) -> str:
    found = element.find(tag)
    if found is None or found.text is None or not found.text.strip():
        raise ValueError(f"{path}: an annotation needs <{tag}>")
    return found.text.strip()


def _number(element: ElementTree.Element, tag: str, path: Path) -> int:
    text = _text(element, tag, path)
    try:
        return int(round(float(text)))  # some VOC boxes are written as floats
    except ValueError:
        raise ValueError(f"{path}: <{tag}> is {text!r}, not a number") from None


def _check_box(box: tuple[int, int, int, int], width: int, height: int, where: str) -> None:
    """One line naming ``where`` unless ``box`` is a non-empty box inside the ``width`` x ``height`` image: 1-based
    inclusive, 0 allowed as well (annotations written by 0-based tools), as :meth:`VOCAnnotation.class_mask`
    reads it."""
    xmin, ymin, xmax, ymax = box
    if xmax < xmin or ymax < ymin:
        problem = "has xmax < xmin" if xmax < xmin else "has ymax < ymin"
    elif min(box) < 0 or xmax > width or ymax > height:
        problem = f"lies outside the {width}x{height} image"
    else:
        return
    raise ValueError(f"{where}: its box (xmin {xmin}, ymin {ymin}, xmax {xmax}, ymax {ymax}) {problem}")


def read_annotation(path: PathLike, classes: Sequence[str]) -> VOCAnnotation:
    """One ``Annotations/<id>.xml``: its size and objects (class index, box, difficult flag); an annotation without
    objects, an object of a class outside ``classes``, or a box that is inverted (xmax < xmin) or outside the image,
    is one line naming the file (and the object)."""
    path = Path(path)
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        raise ValueError(f"{path} is not a VOC annotation (XML: {error})") from None
    except OSError as error:
        raise OSError(f"cannot read annotation {path}: {error.strerror or error}") from None
    size = root.find("size")
    if size is None:
        raise ValueError(f"{path}: an annotation needs <size>")
    width, height = _number(size, "width", path), _number(size, "height", path)
    objects = []
    for number, element in enumerate(root.findall("object"), 1):
        name = _text(element, "name", path)
        if name not in classes:
            raise ValueError(f"{path}: object class '{name}' is not one of the {len(classes)} classes "
                             f"({', '.join(classes[:8])}{', ...' if len(classes) > 8 else ''})")
        box = element.find("bndbox")
        if box is None:
            raise ValueError(f"{path}: object '{name}' has no <bndbox>")
        coords = tuple(_number(box, tag, path) for tag in ("xmin", "ymin", "xmax", "ymax"))
        _check_box(coords, width, height, f"{path}: object {number} ('{name}')")
        difficult = element.find("difficult")
        objects.append(VOCObject(list(classes).index(name), coords,
                                 difficult is not None and (difficult.text or "0").strip() == "1"))
    if not objects:
        raise ValueError(f"{path}: the annotation has no <object>; VOC annotates at least one object per image")
    return VOCAnnotation(path, width, height, tuple(objects))


def read_image_set(path: PathLike) -> list[tuple[str, int]]:
    """The image ids of an ``ImageSets/Main/<set>.txt`` file with their line numbers (the first field of each line:
    per-class sets also carry a 1/-1/0 flag)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image set not found: {path}")
    ids = [(line.split()[0], number) for number, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    if not ids:
        raise ValueError(f"{path}: the image set lists no image")
    return ids


def voc_class_names(root: PathLike) -> tuple[list[str], str]:
    """The class names of a VOCdevkit folder and where they come from: its ``classes.txt``, else the 20 VOC
    classes."""
    names_file = Path(root) / CLASSES_FILENAME
    if names_file.is_file():
        return read_class_names(names_file), str(names_file)
    return list(VOC_CLASSES), "the 20 Pascal VOC classes"


class VOCDataset(ImageDataset):
    """Multi-label images of a VOCdevkit folder: (image, label vector) pairs, the vector an int8 tensor of 1 / -1 / 0
    per class (present / absent / only difficult instances).

    The images come from an image set (``ImageSets/Main/<set>.txt``, labels and difficult flags from the
    annotations), a multi-label list file or the reference's JSON list (labels from the list; difficult flags
    then unknown). Images are ``JPEGImages/<name>`` (``.jpg`` added to a name without suffix). ``annotations[i]``
    holds row i's boxes where its XML exists (the per-class masks of :meth:`class_mask` and :meth:`object_masks`).
    """

    task = MULTI_LABEL

    def __init__(self, root: PathLike, listing: str | PathLike, transform: Optional[Callable] = None,
                 num_classes: Optional[int] = None) -> None:
        self.devkit = require_dir(root, "VOCdevkit folder (--root_data)")
        images = self.devkit / JPEG_DIRNAME
        if not images.is_dir():
            raise FileNotFoundError(f"--root_data {self.devkit} is not a VOCdevkit year folder: no {JPEG_DIRNAME}/ "
                                    f"in it (give e.g. VOCdevkit/VOC2012)")
        classes, origin = voc_class_names(self.devkit)
        if num_classes is not None and num_classes != len(classes):
            raise ValueError(f"--classes {num_classes}, but {self.devkit} has {len(classes)} classes ({origin})")
        self.list_file = self._resolve_listing(listing)
        annotations_dir = self.devkit / ANNOTATIONS_DIRNAME
        if self.list_file.resolve().parent == (self.devkit / IMAGE_SETS_DIRNAME).resolve():
            names, vectors, annotations, lines = [], [], [], []
            for image_id, line in read_image_set(self.list_file):
                xml = annotations_dir / f"{image_id}.xml"
                if not xml.is_file():
                    raise FileNotFoundError(f"{self.list_file}:{line}: image '{image_id}' has no annotation {xml}")
                annotation = read_annotation(xml, classes)
                names.append(f"{image_id}.jpg")
                vectors.append(annotation.label_vector(len(classes)))
                annotations.append(annotation)
                lines.append(line)
        else:
            reader = read_label_json if self.list_file.suffix.lower() == ".json" else read_multilabel_list
            rows = reader(self.list_file, classes)
            names = [row.path if Path(row.path).suffix else f"{row.path}.jpg" for row in rows]
            vectors = [tuple(PRESENT if c in row.labels else ABSENT for c in range(len(classes))) for row in rows]
            xmls = [annotations_dir / f"{Path(name).stem}.xml" for name in names]
            annotations = [read_annotation(xml, classes) if xml.is_file() else None for xml in xmls]
            lines = None if reader is read_label_json else [row.line for row in rows]  # JSON: no line to name
        check_images_exist(images, names, str(self.list_file), lines)
        super().__init__(images, list(zip(names, vectors)), transform, classes, origin)
        self.annotations = annotations

    def _resolve_listing(self, listing: str | PathLike) -> Path:
        """An image-set name (``val``) or a list file (working directory first, then under the devkit folder)."""
        image_set = self.devkit / IMAGE_SETS_DIRNAME / f"{listing}.txt"
        if str(listing) in IMAGE_SETS or (not Path(listing).suffix and image_set.is_file()):
            if not image_set.is_file():
                raise FileNotFoundError(f"image set '{listing}' not found: {image_set}")
            return image_set
        for candidate in (Path(listing), self.devkit / listing):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"{listing} is neither an image set of {self.devkit / IMAGE_SETS_DIRNAME} "
                                f"({', '.join(IMAGE_SETS)}) nor a list file (in the working directory or under "
                                f"{self.devkit})")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, vector = super().__getitem__(index)
        return image, torch.tensor(vector, dtype=torch.int8)

    @property
    def origin(self) -> str:
        return str(self.list_file)

    def object_masks(self, rows: Sequence[int]) -> ObjectMasks | None:
        """The boxes of ``rows`` as masks (one per image and class: the union of the class's boxes) when every row
        has its annotation, else None."""
        if not all(self.annotations[row] is not None for row in rows):
            return None
        return ObjectMasks(f"boxes of {self.devkit / ANNOTATIONS_DIRNAME}", self.class_mask)

    def class_mask(self, row: int, label: int) -> np.ndarray:
        """(height, width) bool at the image's resolution: the boxes of class ``label`` in row ``row``."""
        annotation = self.annotations[row]
        if annotation is None:
            raise FileNotFoundError(f"image {self.samples[row][0]} has no annotation under "
                                    f"{self.devkit / ANNOTATIONS_DIRNAME}: no boxes for its masks")
        return annotation.class_mask(label)
