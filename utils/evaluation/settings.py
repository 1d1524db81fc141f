"""What an evaluation is asked to do, as frozen settings: the trained model, the evaluated data and its subset, the
saliency maps, and the settings of each pipeline (:class:`RecognitionSettings` for :func:`~.recognition.recognise`,
:class:`EvaluationSettings` for :func:`~.objrecon.evaluate`). The scripts build them from their flags once
(:mod:`.flags`); from Python they are built directly::

    settings = RecognitionSettings(TrainedModel("runs/ca"), EvaluatedData(subset=DataSubset(fraction=0.1)),
                                   Saliency(methods=("gradcam", "attention")), store_dir="Evaluation/ca")

Each field's flag is named in its class's docstring; the defaults are the flags' defaults.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from models import ModelSettings
from utils.data import DEFAULT_CROP_PCT
from utils.faithfulness import VOC_AP
from utils.reports.report import DEFAULT_GALLERY_IMAGES
from utils.runtime.forward import ForwardSettings
from utils.task import PRED_THRESHOLD

from .rows import evaluated_indices
from .shards import DEFAULT_SHARD_BATCHES

PathLike = Union[str, Path]
DEFAULT_METHOD = "gradcam"
MULTI_LABEL_TOLERANCE = 15.0  # pixels: the pointing game of Zhang et al. (Excitation Backprop) on Pascal VOC


@dataclass(frozen=True)
class TrainedModel:
    """The model to evaluate: a run folder of ``main_INets.py`` or a weights file (``state_root``,
    ``--state_root``), rebuilt from its config.json, which ``choice`` overrides where given (``--model``, ``--pool``,
    ``--heads``, ``--classes``; ``pretrained``, ``--pretrained`` without ``state_root``: ImageNet weights of the
    model; training's ``init_from``, ``freeze`` and ``drop_rate`` do not apply)."""

    state_root: Optional[PathLike] = None
    choice: ModelSettings = field(default_factory=ModelSettings)


@dataclass(frozen=True)
class DataSubset:
    """Which rows of the dataset are evaluated: ``indexes`` (``--indexes``, 0-based rows; None: all), then a seeded
    random ``fraction`` of them (``--fraction``, in (0, 1]); ``seed`` (``--seed``) also seeds the random baseline."""

    fraction: float = 1.0
    seed: int = 0
    indexes: Optional[tuple[int, ...]] = None

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1:
            raise ValueError(f"--fraction must be in (0, 1], got {self.fraction}")
        if self.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {self.seed}")
        if self.indexes is not None:
            object.__setattr__(self, "indexes", tuple(sorted({int(i) for i in self.indexes})))

    def rows(self, num_images: int) -> list[int]:
        """The evaluated rows of a dataset of ``num_images`` images, in dataset order."""
        return evaluated_indices(num_images, self.fraction, self.seed, self.indexes)

    @property
    def index_list(self) -> Optional[list[int]]:
        """``indexes`` as the reports record them."""
        return None if self.indexes is None else list(self.indexes)


@dataclass(frozen=True)
class EvaluatedData:
    """The evaluated images and how they are read.

    ``kind`` (``--dataset``): ``imagenet`` or ``voc``, None: the run's task; ``root`` (``--root_data``) and
    ``listing`` (``--path_lbl``): None: the kind's built-in set (val split); ``imsize`` (``--imsize``, None: the
    run's, else 224), ``crop_pct`` (``--crop_pct``), ``squash`` (``--squash``): the evaluation geometry; the
    normalisation is the model's. ``batch_size`` (``--batch_size``) and ``workers`` (``--workers``): the loader's.
    """

    kind: Optional[str] = None
    root: Optional[PathLike] = None
    listing: Optional[PathLike] = None
    imsize: Optional[int] = None
    crop_pct: float = DEFAULT_CROP_PCT
    squash: bool = False
    subset: DataSubset = field(default_factory=DataSubset)
    batch_size: int = 64
    workers: int = 2

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"--batch_size must be >= 1, got {self.batch_size}")
        if self.imsize is not None and self.imsize < 1:
            raise ValueError(f"--imsize must be >= 1, got {self.imsize}")
        if self.workers < 0:
            raise ValueError(f"--workers must be >= 0, got {self.workers}")


@dataclass(frozen=True)
class Saliency:
    """The maps: ``methods`` (``--method``; recognition: () computes none; evaluation: None reads every saved file,
    else :data:`DEFAULT_METHOD` when computing), their ``engine`` (``--engine``), the explained class
    ``class_source`` (``gt`` or ``pred``; None: recognition's ``gt``, the evaluation protocol's or the saliency
    file's) and, for multi-label models, which predicted classes ``pred`` explains (``--pred_threshold``,
    ``--pred_topk``)."""

    methods: Optional[tuple[str, ...]] = None
    engine: str = "auto"
    class_source: Optional[str] = None
    pred_threshold: float = PRED_THRESHOLD
    pred_topk: Optional[int] = None

    def __post_init__(self) -> None:
        if self.methods is not None:
            object.__setattr__(self, "methods", tuple(self.methods))


def tolerance_px(tolerance: Optional[float], multi_label: bool) -> float:
    """``--pointing_tolerance`` in pixels (default: :data:`MULTI_LABEL_TOLERANCE` for multi-label models, else 0)."""
    if tolerance is not None:
        if tolerance < 0:
            raise ValueError(f"--pointing_tolerance must be >= 0, got {tolerance}")
        return tolerance
    return MULTI_LABEL_TOLERANCE if multi_label else 0.0


def check_shard_batches(shard_batches: int) -> None:
    if shard_batches < 1:
        raise ValueError(f"--shard_batches must be >= 1, got {shard_batches}")


@dataclass(frozen=True)
class RecognitionSettings:
    """Accuracy and saliency maps (``recognition_imagenet.py``): besides the model, data, maps and ``forward``
    (``--amp``, ``--channels_last``, ``--compile``; its ``chunk``, the most images forwarded at once, is the
    scripts' ``--batch_size``; its device is chosen by ``use_gpu``, ``--use_gpu``), the
    output folder ``store_dir`` (``--store_dir``, None: ``Evaluation/<run folder name>``), the report's path
    ``report`` (``--report``, None: STORE_DIR/classification.json), ``n_overlays`` (``--n_overlays``), the
    multi-label AP definition ``ap`` (``--ap``), ``pointing_tolerance`` (``--pointing_tolerance``), and the commits:
    ``resume`` (``--resume``: continue from the committed shards) and ``shard_batches`` (``--shard_batches``, the
    batches per shard, :mod:`.shards`)."""

    model: TrainedModel
    data: EvaluatedData = field(default_factory=EvaluatedData)
    saliency: Saliency = field(default_factory=lambda: Saliency(methods=()))
    forward: ForwardSettings = field(default_factory=ForwardSettings)
    use_gpu: bool = False
    store_dir: Optional[PathLike] = None
    report: Optional[PathLike] = None
    n_overlays: int = 8
    ap: str = VOC_AP
    pointing_tolerance: Optional[float] = None
    resume: bool = False
    shard_batches: int = DEFAULT_SHARD_BATCHES

    def __post_init__(self) -> None:
        if self.n_overlays < 0:
            raise ValueError(f"--n_overlays must be >= 0, got {self.n_overlays}")
        check_shard_batches(self.shard_batches)


@dataclass(frozen=True)
class EvaluationSettings:
    """Interpretability metrics (``objrecon_imagenet.py``): besides the model, data, maps, ``forward`` and
    ``use_gpu``, the metric ``protocol`` (``--protocol``), the output folder ``store_dir`` (``--store_dir``), the
    folder of saved maps ``saliency_dir`` (``--saliency_dir``, None: ``store_dir``), ``compute`` (``--compute``:
    compute maps even where files exist) and ``save_maps`` (``--save_maps``), the run's name ``label``
    (``--label``, None: its pooling), another evaluation to ``compare`` with (``--compare``), the images of
    report.html's gallery ``report_images`` (``--report_images``, 0: no page), ``pointing_tolerance``, ``argv``,
    the command line recorded in summary.json (None from Python), ``resume`` and ``shard_batches`` (as
    :class:`RecognitionSettings`)."""

    model: TrainedModel
    data: EvaluatedData = field(default_factory=EvaluatedData)
    saliency: Saliency = field(default_factory=Saliency)
    forward: ForwardSettings = field(default_factory=ForwardSettings)
    use_gpu: bool = False
    protocol: str = "reference"
    store_dir: Optional[PathLike] = None
    saliency_dir: Optional[PathLike] = None
    compute: bool = False
    save_maps: bool = False
    label: Optional[str] = None
    compare: Optional[PathLike] = None
    report_images: int = DEFAULT_GALLERY_IMAGES
    pointing_tolerance: Optional[float] = None
    argv: Optional[tuple[str, ...]] = None
    resume: bool = False
    shard_batches: int = DEFAULT_SHARD_BATCHES

    def __post_init__(self) -> None:
        check_shard_batches(self.shard_batches)
        if self.report_images < 0:
            raise ValueError(f"--report_images must be >= 0 (0: no report.html), got {self.report_images}")
        if self.argv is not None:
            object.__setattr__(self, "argv", tuple(self.argv))
