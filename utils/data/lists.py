"""List files: one ``relative/path,label`` (or ``relative/path label``) per line, paths relative to an image root
(``--root_data``); a ``classes.txt`` beside a list names the classes (line i names label i)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

PathLike = str | os.PathLike
CLASSES_FILENAME = "classes.txt"
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


def read_class_names(path: PathLike) -> list[str]:
    """Read a ``classes.txt`` file: one class name per line, blank lines ignored."""
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def class_name(names: Optional[Sequence[str]], label: int) -> str:
    """A label's class name where ``names`` (a classes.txt, a run's config) has one, else the label itself."""
    return names[label] if names is not None and 0 <= label < len(names) else str(label)


def write_lines(path: Path, lines: Sequence[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
