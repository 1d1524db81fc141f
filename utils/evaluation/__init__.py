"""The evaluation pipeline recognition_imagenet.py and objrecon_imagenet.py share (the model and data of a run,
rows, methods, maps, masks, one sharding policy), and the two thin pipelines on it, as functions of frozen
settings (:mod:`.settings`): :func:`recognise` (accuracy and saliency maps, :mod:`.recognition`) and
:func:`evaluate` (interpretability metrics, :mod:`.objrecon`); :func:`compare` puts evaluation folders side by side
(:mod:`utils.reports`, where the pages and figures are)."""
from __future__ import annotations

from utils.reports.compare import Comparison, compare

from .objrecon import evaluate
from .recognition import recognise
from .results import EvaluationResult, RecognitionResult
from .settings import (
    DataSubset,
    EvaluatedData,
    EvaluationSettings,
    RecognitionSettings,
    Saliency,
    TrainedModel,
)

__all__ = ["Comparison", "DataSubset", "EvaluatedData", "EvaluationResult", "EvaluationSettings", "RecognitionResult",
           "RecognitionSettings", "Saliency", "TrainedModel", "compare", "evaluate", "recognise"]
