"""What a training run does, as frozen settings objects: :class:`TrainingSettings` groups the run, its data, the
model, the optimizer, the schedule, the loss and the forward passes. ``main_INets.py`` builds them from its flags
(:mod:`.flags`); a notebook builds them directly::

    settings = TrainingSettings(RunSettings("runs/lite0", epochs=2), model=ModelSettings("resnet18"))
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from models.settings import ModelSettings
from utils.data import DataSource, Preprocessing
from utils.data.base import PathLike
from utils.runtime.forward import ForwardSettings


def at_least(flag: str, value: int, minimum: int) -> None:
    """One line for a flag's value below its minimum, before anything is built or written."""
    if value < minimum:
        raise ValueError(f"{flag} must be >= {minimum}, got {value}")


@dataclass(frozen=True)
class RunSettings:
    """The run folder and the job around the steps.

    Args:
        store_dir: ``--store_dir``, the run folder; a folder that holds a run needs ``resume`` or ``overwrite``.
        epochs: the total number of epochs (a resumed run may extend it).
        batch_size: images per step and process.
        workers: data loading processes per process.
        seed: seeds the weights' initialisation, the held-out split, the training fraction and every epoch's draws.
        fixed: deterministic algorithms (bitwise reproducible runs).
        use_gpu: train on CUDA (``cuda:LOCAL_RANK`` under DDP).
        resume: ``"auto"`` continues from ``store_dir/last.pth`` (or starts fresh where there is none), a path from
            that file; None starts a new run.
        overwrite: replace the run in ``store_dir`` (its files are deleted first, other files stay).
        s_iterations: keep a checkpoint every N epochs (0: none).
        log_interval: without progress bars (batch jobs), a plain line every N steps (0: epoch lines only).
    """

    store_dir: PathLike
    epochs: int = 6
    batch_size: int = 64
    workers: int = 2
    seed: int = 0
    fixed: bool = False
    use_gpu: bool = False
    resume: Optional[PathLike] = None
    overwrite: bool = False
    s_iterations: int = 15
    log_interval: int = 50

    def __post_init__(self) -> None:
        if self.resume and self.overwrite:
            raise ValueError("--resume continues the run in --store_dir and --overwrite replaces it: give one")
        at_least("--epochs", self.epochs, 1)
        at_least("--batch_size", self.batch_size, 1)
        at_least("--workers", self.workers, 0)
        at_least("--seed", self.seed, 0)
        at_least("--s_iterations", self.s_iterations, 1)
        at_least("--log_interval", self.log_interval, 0)


@dataclass(frozen=True)
class TrainingDataSettings:
    """The training images and where the validation images come from.

    Args:
        source: the training data (``--dataset``, ``--root_data``, ``--path_list``); the default: the built-in set.
        val_root, val_list: ``--val_root`` / ``--val_list``, the validation data (see
            :func:`~utils.data.training_sources`); without any, ``val_split`` of the training images is held out.
        val_split: the seeded fraction held out for validation where there is no validation data (0: none).
        imsize: the training and validation image size.
        crop_scale: the area range of the training's random resized crop.
        fraction: a seeded random fraction of the training images.
    """

    source: DataSource = field(default_factory=DataSource)
    val_root: Optional[PathLike] = None
    val_list: Optional[PathLike] = None
    val_split: float = 0.1
    imsize: int = 64
    crop_scale: tuple[float, float] = (0.35, 1.0)
    fraction: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "crop_scale", tuple(self.crop_scale))  # the flags give a list
        if not 0 <= self.val_split < 1:
            raise ValueError(f"--val_split must be in [0, 1), got {self.val_split}")
        at_least("--imsize", self.imsize, 1)
        if not 0 < self.fraction <= 1:
            raise ValueError(f"--fraction must be in (0, 1], got {self.fraction}")

    def preprocessing(self, mean: tuple[float, ...], std: tuple[float, ...]) -> Preprocessing:
        """The images' preprocessing, normalised with the statistics the model's starting weights expect."""
        return Preprocessing(self.imsize, mean=mean, std=std, crop_scale=self.crop_scale)


@dataclass(frozen=True)
class OptimizerSettings:
    """timm's optimizer ``opt`` (sgd, adamw, lamb, ...) at peak learning rate ``lr``; the gradient norm clipped to
    ``clip_grad`` where given; an exponential moving average of the weights (``ema``, ``ema_decay``) that is then
    what validation scores."""

    opt: str = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.05
    clip_grad: Optional[float] = None
    ema: bool = False
    ema_decay: float = 0.9998


@dataclass(frozen=True)
class ScheduleSettings:
    """timm's learning-rate schedule ``sched`` (multistep, step, cosine or none), stepped per epoch: ``milestones``
    (multistep) or every ``decay_epochs`` (step) multiplied by ``decay_rate``, down to ``min_lr``; a linear warm-up
    from ``warmup_lr`` over ``warmup_epochs``."""

    sched: str = "cosine"
    milestones: tuple[int, ...] = (30, 60, 90)
    decay_epochs: float = 30
    decay_rate: float = 0.1
    min_lr: float = 0.0
    warmup_epochs: int = 0
    warmup_lr: float = 1e-5

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(self.milestones))  # the flags give a list


@dataclass(frozen=True)
class LossSettings:
    """The loss and the batch mixing: ``criterion`` (None: the task's, see :meth:`criterion_for`) with label
    ``smoothing``; mixup / cutmix of alpha ``mixup`` / ``cutmix`` (0: off) on a ``mixup_prob`` share of the batches,
    cutmix with probability ``mixup_switch_prob`` where both are on."""

    criterion: Optional[str] = None
    smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5

    @property
    def mixes(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    def criterion_for(self, default: str) -> str:
        """The criterion: this setting's, else ``default`` (the task's, :attr:`~utils.task.Task.default_criterion`)."""
        return self.criterion or default


@dataclass(frozen=True)
class TrainingSettings:
    """Everything a training run does (:func:`~utils.training.train`). ``forward``'s device and chunk are the run's:
    its process's device and ``run.batch_size``."""

    run: RunSettings
    data: TrainingDataSettings = field(default_factory=TrainingDataSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    loss: LossSettings = field(default_factory=LossSettings)
    forward: ForwardSettings = field(default_factory=ForwardSettings)

    def as_record(self) -> dict[str, Any]:
        """These settings as plain YAML values, grouped as here: the run folder's ``args.yaml`` of a run started
        from Python."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)  # paths, devices
