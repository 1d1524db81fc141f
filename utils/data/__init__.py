"""Data: the dataset factory (:mod:`.factory`) above one module per format (list files, image folders, ImageNet's
layout, Pascal VOC, WebDataset tar shards, Hugging Face datasets on disk) on a shared base (:mod:`.base`);
transforms, object masks, generated datasets (the built-in shapes, their multi-label VOCdevkit variant, exported
Fashion-MNIST) and the seeded sampling of rows."""
from .base import MULTI_LABEL, SINGLE_LABEL, ImageDataset
from .builtin import BUILTIN_CLASSES, BUILTIN_IMSIZE, default_builtin_root, ensure_builtin_dataset, render_builtin_image
from .builtin_voc import BUILTIN_VOC_IMSIZE, default_builtin_voc_root, ensure_builtin_voc, render_multilabel_image
from .factory import (
    DATASET_KINDS,
    FORMATS,
    DatasetFormat,
    DataSource,
    build_dataset,
    dataset_format,
    default_kind,
    kind_task,
    training_sources,
)
from .fashion_mnist import (
    FASHION_MNIST_CLASSES,
    fashion_mnist_available,
    fashion_mnist_missing,
    prepare_fashion_mnist,
)
from .folder import ImageFolderDataset
from .generated import IMAGES_DIRNAME, MANIFEST_FILENAME, MASKS_DIRNAME, load_mask
from .hf import HFDataset
from .imagenet import ImageNetDataset
from .lists import (
    CLASSES_FILENAME,
    ListDataset,
    ListRow,
    MultiLabelRow,
    class_name,
    read_class_names,
    read_label_json,
    read_list_file,
    read_multilabel_list,
)
from .masks import ObjectMasks, mask_files
from .sampling import EpochIndexSampler, EpochSeededDataset, check_indexes, subset_indices
from .shards import ShardDataset, index_shard, shard_files
from .transforms import DEFAULT_CROP_PCT, Preprocessing, build_transform, denormalize, normalize, transform_mask
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
    "DATASET_KINDS", "DEFAULT_CROP_PCT", "DIFFICULT", "DataSource", "DatasetFormat", "EpochIndexSampler",
    "EpochSeededDataset", "FASHION_MNIST_CLASSES", "FORMATS", "HFDataset", "IMAGES_DIRNAME", "IMAGE_SETS_DIRNAME",
    "ImageDataset", "ImageFolderDataset", "ImageNetDataset", "JPEG_DIRNAME", "ListDataset", "ListRow",
    "MANIFEST_FILENAME", "MASKS_DIRNAME", "MULTI_LABEL", "MultiLabelRow", "ObjectMasks", "PRESENT", "Preprocessing",
    "SINGLE_LABEL", "ShardDataset", "VOCAnnotation", "VOCDataset", "VOC_CLASSES", "build_dataset", "build_transform",
    "check_indexes", "class_name", "dataset_format", "default_builtin_root", "default_builtin_voc_root", "default_kind",
    "denormalize", "ensure_builtin_dataset", "ensure_builtin_voc", "fashion_mnist_available", "fashion_mnist_missing",
    "index_shard", "kind_task", "load_mask", "mask_files", "normalize", "prepare_fashion_mnist", "read_annotation",
    "read_class_names", "read_image_set", "read_label_json", "read_list_file", "read_multilabel_list",
    "render_builtin_image", "render_multilabel_image", "shard_files", "subset_indices", "training_sources",
    "transform_mask"
]
