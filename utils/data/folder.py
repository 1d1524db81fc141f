"""Image folders: ``root/<class>/<image>`` with one sub-folder per class (sorted names -> labels 0..C-1)."""
from __future__ import annotations

from collections.abc import Callable

from .base import ImageDataset, PathLike, check_images_exist, require_dir

SPLIT_NAMES = frozenset({"train", "training", "val", "valid", "validation", "test"})


class ImageFolderDataset(ImageDataset):
    """``root/<class>/<image>`` with one sub-folder per class (sorted names -> labels 0..C-1)."""

    EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")

    def __init__(self, root: PathLike, transform: Callable | None = None, num_classes: int | None = None) -> None:
        root = require_dir(root, "image folder")
        class_dirs = sorted(d for d in root.iterdir() if d.is_dir())
        if not class_dirs:
            raise ValueError(f"{root}: expected one sub-folder per class, found none")
        if {d.name.lower() for d in class_dirs} <= SPLIT_NAMES:
            # split folders taken for class folders: the model would learn to tell train from val
            names = ", ".join(f"{d.name}/" for d in class_dirs)
            raise ValueError(f"{root} holds {names}: split folders, not one sub-folder per class; give the folder of "
                             f"the class folders (--root_data {class_dirs[0]}) or a list file (--path_list)")
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
        check_images_exist(root, [path for path, _ in samples], f"the image folder {root}")
        super().__init__(root, samples, transform, [d.name for d in class_dirs], f"the class folders of {root}")

    @property
    def origin(self) -> str:
        return f"the image folder {self.root}"
