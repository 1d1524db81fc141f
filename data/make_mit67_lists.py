"""Convert the MIT Indoor-67 split files to list files ``category/file.jpg,label``.

The dataset ships ``TrainImages.txt`` and ``TestImages.txt`` with one ``category/file.jpg`` per line.
The label of an image is the index of its category in the alphabetically sorted list of categories
(0 = airport_inside ... 66 = winecellar); every category must appear in both split files.

    python data/make_mit67_lists.py --train TrainImages.txt --test TestImages.txt --out_dir data
    # -> data/MIT_train.csv, data/MIT_val.csv; images are then read from <Images folder>/<category>/<file>
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def read_split(path: Path) -> list[str]:
    """The ``category/file`` entries of a split file, in file order."""
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    entries = []
    for line_number, raw_line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        entry = raw_line.strip()
        if not entry:
            continue
        category, _, file_name = entry.partition("/")
        if not category or not file_name or "," in entry:
            raise ValueError(f"{path}:{line_number}: expected 'category/file.jpg', got {raw_line!r}")
        entries.append(entry)
    if not entries:
        raise ValueError(f"{path}: no entries")
    return entries


def category_labels(train: list[str], test: list[str]) -> dict[str, int]:
    """Sorted categories -> index; raises if a category is in only one split or an image is in both."""
    train_categories = {entry.split("/", 1)[0] for entry in train}
    test_categories = {entry.split("/", 1)[0] for entry in test}
    if train_categories != test_categories:
        only_train = sorted(train_categories - test_categories)
        only_test = sorted(test_categories - train_categories)
        raise ValueError(f"categories differ between the splits: only in train {only_train}, only in test {only_test}")
    shared = sorted(set(train) & set(test))
    if shared:
        raise ValueError(f"{len(shared)} images are in both splits, e.g. {shared[0]}")
    return {category: label for label, category in enumerate(sorted(train_categories))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, required=True, help="TrainImages.txt of MIT Indoor-67")
    parser.add_argument("--test", type=Path, required=True, help="TestImages.txt of MIT Indoor-67")
    parser.add_argument("--out_dir", type=Path, default=Path(__file__).resolve().parent,
                        help="folder for MIT_train.csv and MIT_val.csv (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        train, test = read_split(args.train), read_split(args.test)
        labels = category_labels(train, test)
    except (OSError, ValueError) as err:
        sys.exit(f"error: {err}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for entries, name in ((train, "MIT_train.csv"), (test, "MIT_val.csv")):
        lines = [f"{entry},{labels[entry.split('/', 1)[0]]}\n" for entry in entries]
        (args.out_dir / name).write_text("".join(lines), encoding="utf-8")
        print(f"wrote {len(lines)} rows to {args.out_dir / name}")
    print(f"{len(labels)} categories")


if __name__ == "__main__":
    main()
