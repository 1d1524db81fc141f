"""The training pipeline behind main_INets.py: :func:`train` runs :class:`TrainingSettings` (the run, data, model,
optimizer, schedule, loss and forward settings) and returns a :class:`TrainingResult`; the trainer, its data, loops
and recipe from timm's parts, the run log."""
from models.settings import ModelSettings
from utils.runtime.forward import ForwardSettings

from .pipeline import TrainingResult, train
from .settings import (
    LossSettings,
    OptimizerSettings,
    RunSettings,
    ScheduleSettings,
    TrainingDataSettings,
    TrainingSettings,
)

__all__ = [
    "ForwardSettings", "LossSettings", "ModelSettings", "OptimizerSettings", "RunSettings", "ScheduleSettings",
    "TrainingDataSettings", "TrainingResult", "TrainingSettings", "train",
]
