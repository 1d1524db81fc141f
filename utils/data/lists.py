"""List files, and the single-label dataset over one: one ``relative/path,label`` (or ``relative/path label``) per
line, paths relative to an image root (``--root_data``); a ``classes.txt`` beside a list names the classes (line i
names label i). Multi-label lists (read here, their dataset is :class:`~.voc.VOCDataset`): ``relative/path,label
label ...`` per line, or the reference's JSON object ``{image: [one number per class]}``."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

from .base import ImageDataset, PathLike, check_images_exist, require_dir

CLASSES_FILENAME = "classes.txt"
TRAIN_LIST_NAMES = ("train.csv", "train.txt")
VAL_LIST_NAMES = ("val.csv", "val.txt")
_HEADERS = {("path", "label"), ("file", "label")}


class ListRow(NamedTuple):
    path: str
    label: int
    line: int


def read_list_file(path: PathLike) -> list[ListRow]:
    """The rows of a list file, with their line numbers (for error messages); blank lines and a header are
    skipped, anything else that does not parse is one line naming the file and line."""
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
        rows.append(ListRow(fields[0], label, line_number))
    if not rows:
        raise ValueError(f"{path}: the list file has no samples")
    return rows


class MultiLabelRow(NamedTuple):
    path: str
    labels: tuple[int, ...]  # the classes present, ascending
    line: int  # the line of a list file; the entry's position in a JSON list


def _class_index(token: str, classes: Sequence[str], where: str) -> int:
    """A label given as a class name or an index into ``classes``."""
    if token in classes:
        return list(classes).index(token)
    try:
        index = int(token)
    except ValueError:
        raise ValueError(f"{where}: class '{token}' is not one of the {len(classes)} classes "
                         f"({', '.join(classes[:8])}{', ...' if len(classes) > 8 else ''})") from None
    if not 0 <= index < len(classes):
        raise ValueError(f"{where}: label {index} is outside [0, {len(classes)}) for the {len(classes)} classes")
    return index


def read_multilabel_list(path: PathLike, classes: Sequence[str]) -> list[MultiLabelRow]:
    """The rows of a multi-label list file: ``relative/path,label label ...`` per line, each label a class name or
    an index into ``classes`` (none: no class present); blank lines and a ``path,labels`` header are skipped. A
    label outside ``classes`` is one line naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"list file not found: {path}")
    rows = []
    for line_number, raw_line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        line = raw_line.strip()
        if not line or (not rows and line.replace(" ", "").lower() in ("path,labels", "file,labels")):
            continue
        if "," not in line or not line.rsplit(",", 1)[0].strip():
            raise ValueError(f"{path}:{line_number}: expected 'path,label label ...' (class names or indices), "
                             f"got {line!r}")
        image, labels = (field.strip() for field in line.rsplit(",", 1))
        indices = {_class_index(token, classes, f"{path}:{line_number}") for token in labels.split()}
        rows.append(MultiLabelRow(image, tuple(sorted(indices)), line_number))
    if not rows:
        raise ValueError(f"{path}: the list file has no samples")
    return rows


def read_label_json(path: PathLike, classes: Sequence[str]) -> list[MultiLabelRow]:
    """The reference's multi-label list (``--sorted_path``): a JSON object ``{image name: label vector}``, one number
    per class in ``classes`` order, 1 = present (0 or -1 = absent)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"list file not found: {path}")
    try:
        entries = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(entries, dict) or not entries:
        raise ValueError(f"{path}: expected a JSON object {{image name: label vector}} with at least one image")
    rows = []
    for position, (image, vector) in enumerate(entries.items(), 1):
        if not isinstance(vector, list) or len(vector) != len(classes) \
                or any(value not in (1, 0, -1) or isinstance(value, bool) for value in vector):
            raise ValueError(f"{path}: '{image}' has {vector!r}, expected {len(classes)} numbers (one per class, "
                             f"1 = present, 0 or -1 = absent)")
        rows.append(MultiLabelRow(image, tuple(i for i, value in enumerate(vector) if value == 1), position))
    return rows


def read_class_names(path: PathLike) -> list[str]:
    """Read a ``classes.txt`` file: one class name per line, blank lines ignored."""
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def class_name(names: Optional[Sequence[str]], label: int) -> str:
    """A label's class name where ``names`` (a classes.txt, a run's config) has one, else the label itself."""
    return names[label] if names is not None and 0 <= label < len(names) else str(label)


def write_lines(path: Path, lines: Sequence[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


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
            classes_origin: str | None = None,
    ) -> None:
        root = require_dir(root, "image root")
        self.list_file = Path(list_file)
        rows = read_list_file(self.list_file)
        for _, label, line_number in rows:
            if label < 0:
                raise ValueError(f"{self.list_file}:{line_number}: label {label} is negative; labels are class "
                                 f"indices 0, 1, 2, ...")
            if num_classes is not None and label >= num_classes:
                raise ValueError(
                    f"{self.list_file}:{line_number}: label {label} is outside [0, {num_classes}) "
                    f"for --classes {num_classes}")
        check_images_exist(root, [p for p, _, _ in rows], str(self.list_file), [line for _, _, line in rows])
        super().__init__(root, [(p, label) for p, label, _ in rows], transform, classes, classes_origin)
        self.line_numbers = [line_number for _, _, line_number in rows]

    @property
    def origin(self) -> str:
        return f"list {self.list_file}"

    def check_labels(self, num_classes: int, classes_origin: str) -> None:
        for label, line_number in zip(self.targets, self.line_numbers):
            if label >= num_classes:
                raise ValueError(f"{self.list_file}:{line_number}: label {label} is outside [0, {num_classes}) "
                                 f"for {classes_origin}")


def open_list(root: PathLike, path_list: PathLike, transform: Callable | None = None,
              num_classes: int | None = None) -> ListDataset:
    """The dataset of ``--path_list`` (found in the working directory, else under ``--root_data``), its class names
    from a ``classes.txt`` beside it when there is one."""
    list_file = Path(path_list)
    if not list_file.is_file() and (Path(root) / path_list).is_file():
        list_file = Path(root) / path_list
    if not list_file.is_file():
        raise FileNotFoundError(f"--path_list {path_list} not found in the working directory nor under {root}")
    classes_file = list_file.parent / CLASSES_FILENAME
    if not classes_file.is_file():
        return ListDataset(root, list_file, transform, num_classes)
    return ListDataset(root, list_file, transform, num_classes, read_class_names(classes_file), str(classes_file))


def _find_list(folder: Path, names: tuple[str, ...]) -> Optional[Path]:
    return next((folder / name for name in names if (folder / name).is_file()), None)


def training_lists(root: Optional[PathLike], path_list: PathLike) -> tuple[Optional[Path], Optional[Path]]:
    """The training list of ``--path_list`` and the validation list beside it: ``path_list`` names a list file
    (found in the working directory, else under ``root``), its validation list a ``val.csv`` or ``val.txt`` beside
    it; or a folder holding ``train.csv`` (or ``train.txt``) and perhaps a validation list. A folder without a
    training list leaves the images to ``root``'s class folders, as the paper's ``--path_list data/`` with an
    ImageNet train folder does (None)."""
    path = Path(path_list)
    if path.is_dir():
        return _find_list(path, TRAIN_LIST_NAMES), _find_list(path, VAL_LIST_NAMES)
    if not path.is_file() and root is not None and (Path(root) / path).is_file():
        path = Path(root) / path
    beside = _find_list(path.parent, VAL_LIST_NAMES) if path.is_file() else None
    if beside is not None and beside.resolve() == path.resolve():
        beside = None
    return path, beside
