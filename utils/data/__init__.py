"""Data: list files, datasets of real image files, transforms, generated datasets (the built-in shapes, exported
Fashion-MNIST) and the epoch-seeded sampling of training."""
from .builtin import BUILTIN_CLASSES, BUILTIN_IMSIZE, default_builtin_root, ensure_builtin_dataset, render_builtin_image
from .datasets import (
    ImageDataset,
    ImageFolderDataset,
    ListDataset,
    build_dataset,
    check_indexes,
    subset_indices,
)
from .fashion_mnist import FASHION_MNIST_CLASSES, fashion_mnist_available, prepare_fashion_mnist
from .generated import IMAGES_DIRNAME, MANIFEST_FILENAME, MASKS_DIRNAME, load_mask
from .lists import CLASSES_FILENAME, ListRow, class_name, read_class_names, read_list_file
from .sampling import EpochIndexSampler, EpochSeededDataset
from .transforms import DEFAULT_CROP_PCT, build_transform, denormalize, normalize, transform_mask

__all__ = [
    "BUILTIN_CLASSES", "BUILTIN_IMSIZE", "CLASSES_FILENAME", "DEFAULT_CROP_PCT", "EpochIndexSampler",
    "EpochSeededDataset", "FASHION_MNIST_CLASSES", "IMAGES_DIRNAME", "ImageDataset", "ImageFolderDataset",
    "ListDataset", "ListRow", "MANIFEST_FILENAME", "MASKS_DIRNAME", "build_dataset", "build_transform",
    "check_indexes", "default_builtin_root", "denormalize", "ensure_builtin_dataset", "fashion_mnist_available",
    "load_mask", "normalize", "prepare_fashion_mnist", "read_class_names", "read_list_file", "render_builtin_image",
    "subset_indices", "transform_mask",
    "class_name",
]
