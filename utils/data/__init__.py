"""Data: list files, datasets of real image files, transforms, generated datasets (the built-in shapes, their
multi-label VOCdevkit variant, exported Fashion-MNIST), Pascal VOC and the epoch-seeded sampling of training."""
from .builtin import BUILTIN_CLASSES, BUILTIN_IMSIZE, default_builtin_root, ensure_builtin_dataset, render_builtin_image
from .builtin_voc import BUILTIN_VOC_IMSIZE, default_builtin_voc_root, ensure_builtin_voc, render_multilabel_image
from .datasets import (
    DATASET_KINDS,
    MULTI_LABEL,
    SINGLE_LABEL,
    ImageDataset,
    ImageFolderDataset,
    ListDataset,
    build_dataset,
    check_indexes,
    subset_indices,
)
from .fashion_mnist import (
    FASHION_MNIST_CLASSES,
    fashion_mnist_available,
    fashion_mnist_missing,
    prepare_fashion_mnist,
)
from .generated import IMAGES_DIRNAME, MANIFEST_FILENAME, MASKS_DIRNAME, load_mask
from .lists import (
    CLASSES_FILENAME,
    ListRow,
    MultiLabelRow,
    class_name,
    read_class_names,
    read_label_json,
    read_list_file,
    read_multilabel_list,
)
from .sampling import EpochIndexSampler, EpochSeededDataset
from .transforms import DEFAULT_CROP_PCT, build_transform, denormalize, normalize, transform_mask
from .voc import (
    ABSENT,
    ANNOTATIONS_DIRNAME,
    DIFFICULT,
    IMAGE_SETS_DIRNAME,
    JPEG_DIRNAME,
    PRESENT,
    VOC_CLASSES,
    VOCAnnotation,
    VOCDataset,
    read_annotation,
    read_image_set,
)

__all__ = [
    "ABSENT", "ANNOTATIONS_DIRNAME", "BUILTIN_CLASSES", "BUILTIN_IMSIZE", "BUILTIN_VOC_IMSIZE", "CLASSES_FILENAME",
    "DATASET_KINDS", "DEFAULT_CROP_PCT", "DIFFICULT", "EpochIndexSampler", "EpochSeededDataset",
    "FASHION_MNIST_CLASSES", "IMAGES_DIRNAME", "IMAGE_SETS_DIRNAME", "ImageDataset", "ImageFolderDataset",
    "JPEG_DIRNAME", "ListDataset", "ListRow", "MANIFEST_FILENAME", "MASKS_DIRNAME", "MULTI_LABEL", "MultiLabelRow",
    "PRESENT", "SINGLE_LABEL", "VOCAnnotation", "VOCDataset", "VOC_CLASSES", "build_dataset", "build_transform",
    "check_indexes", "class_name", "default_builtin_root", "default_builtin_voc_root", "denormalize",
    "ensure_builtin_dataset", "ensure_builtin_voc", "fashion_mnist_available", "fashion_mnist_missing", "load_mask",
    "normalize", "prepare_fashion_mnist", "read_annotation", "read_class_names", "read_image_set", "read_label_json",
    "read_list_file", "read_multilabel_list", "render_builtin_image", "render_multilabel_image", "subset_indices",
    "transform_mask",
]
