"""Every faithfulness metric, declared once with its computation: its key (the column of metrics.csv and the key of
summary.json), its label in tables and plots, which direction is better, the scale of its summary, how it computes
its per-image values from a :class:`~utils.faithfulness.batch.MetricBatch` and how they are read back. The
registered metrics (:func:`register_metric`) are what :func:`~utils.faithfulness.batch.evaluate_batch` computes and
what reports, tables, plots and the experiment scripts read; nothing else spells a metric."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np
import torch

from .causal import auc, causal_metric
from .inputs import ArrayLike
from .localization import energy_pointing_game, pointing_game
from .perturbation import perturbation_curve
from .protocol import NUM_IMAGES, NUM_PAIRS, PER_CLASS

if TYPE_CHECKING:
    from .batch import MetricBatch


def _as_float(values: torch.Tensor) -> torch.Tensor:
    return values.double()


def _as_outcome(values: torch.Tensor) -> torch.Tensor:
    """A 0/1 outcome per image (a hit, an increase), kept integral in the per-image rows."""
    return values.long()


def _mean_over_fractions(correct: torch.Tensor) -> torch.Tensor:
    """+/- perturbation: the share of the perturbation fractions at which the image is still classified right."""
    return correct.double().mean(dim=1)


@dataclass(frozen=True)
class Metric:
    """A per-image metric of saliency maps: its declaration and its computation in one object.

    A subclass overrides :meth:`compute`; :func:`register_metric` then adds it to every evaluation (its column of
    metrics.csv, its mean in summary.json, tables and pages). Work that several metrics share (the clean forward,
    the masked forward of AD/AI/AG) is done once per batch by :class:`~utils.faithfulness.batch.MetricBatch`.

    >>> class MapPeak(Metric):
    ...     def compute(self, batch):   # the brightest pixel of each map, as given
    ...         return {self.key: torch.as_tensor(batch.saliency).flatten(1).amax(1)}
    >>> MapPeak("peak", "Peak", True, "the maximum of the raw map", scale=1.0).key
    'peak'

    Args:
        key: the column of metrics.csv and the key of summary.json
        label: its name in tables and plots
        higher_is_better: which direction is better (the arrow of tables, the sign of 'better' in pages)
        description: one line for readers of the pages
        scale: the summary reports ``scale`` x the mean over images (x100 for a fraction or a 0/1 outcome)
        read: per-image values (N,) from the output stored under ``key`` (e.g. the mean of a curve)
        needs_masks: computed only where the images have object masks
        keeps: further per-image arrays that :meth:`compute` returns (e.g. curves), kept in the in-memory rows
    """

    key: str
    label: str
    higher_is_better: bool
    description: str
    scale: float = 100.0
    read: Callable[[torch.Tensor], torch.Tensor] = field(default=_as_float, repr=False)
    needs_masks: bool = False
    keeps: tuple[str, ...] = ()

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"

    def compute(self, batch: MetricBatch) -> Mapping[str, torch.Tensor]:
        """The per-image output (N, ...) under ``key`` and each array of ``keeps``, for the images of ``batch``."""
        raise NotImplementedError(f"metric '{self.key}' declares no computation: override {type(self).__name__}."
                                  f"compute")

    def per_image(self, outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.read(outputs[self.key])

    def summarize(self, values: Sequence[float]) -> Optional[float]:
        """``scale`` x the mean over images (None when no image has a value)."""
        values = [v for v in values if v is not None]
        return self.scale * float(np.mean(np.asarray(values, dtype=np.float64))) if values else None


@dataclass(frozen=True)
class ConfidenceMetric(Metric):
    """AD, AI or AG: read off the masked forward that the batch runs once for all three."""

    def compute(self, batch: MetricBatch) -> Mapping[str, torch.Tensor]:
        return {self.key: batch.confidence[self.key]}


@dataclass(frozen=True)
class CausalMetric(Metric):
    """Insertion or deletion (``mode``): the area under the class-score curve, which it keeps as ``<key>_curve``."""

    mode: str = "deletion"

    def compute(self, batch: MetricBatch) -> Mapping[str, torch.Tensor]:
        curve = causal_metric(batch.model, batch.images, batch.saliency, batch.targets, self.mode,
                              forward=batch.forward, protocol=batch.protocol, mean=batch.mean, std=batch.std)
        return {f"{self.key}_curve": curve, self.key: auc(curve)}


@dataclass(frozen=True)
class PerturbationMetric(Metric):
    """Positive or negative perturbation (``mode``): recognised or not at each of the protocol's fractions (N, F),
    kept as ``<key>_curve`` too."""

    mode: str = "positive"

    def compute(self, batch: MetricBatch) -> Mapping[str, torch.Tensor]:
        correct = perturbation_curve(batch.model, batch.images, batch.saliency, batch.targets, batch.mean,
                                     batch.std, self.mode, batch.protocol.perturbation_fractions, batch.forward,
                                     batch.protocol.class_score)
        return {self.key: correct, f"{self.key}_curve": correct}


@dataclass(frozen=True)
class LocalizationMetric(Metric):
    """A metric of the map against the object mask alone (no model): objrecon scores it with the others, and
    recognition_imagenet.py scores it on the maps it saves. A subclass overrides :meth:`localize`."""

    needs_masks: bool = True

    def localize(self, saliency: ArrayLike, masks: torch.Tensor, tolerance: float) -> torch.Tensor:
        """(N,) values of maps (N, h, w) against bool masks (N, H, W); ``tolerance``: the protocol's pointing
        tolerance in pixels."""
        raise NotImplementedError(f"metric '{self.key}' declares no computation: override {type(self).__name__}."
                                  f"localize")

    def compute(self, batch: MetricBatch) -> Mapping[str, torch.Tensor]:
        return {self.key: self.localize(batch.saliency, batch.masks, batch.protocol.pointing_tolerance)}


@dataclass(frozen=True)
class PointingGame(LocalizationMetric):
    def localize(self, saliency: ArrayLike, masks: torch.Tensor, tolerance: float) -> torch.Tensor:
        return pointing_game(saliency, masks, tolerance)


@dataclass(frozen=True)
class EnergyPointingGame(LocalizationMetric):
    def localize(self, saliency: ArrayLike, masks: torch.Tensor, tolerance: float) -> torch.Tensor:
        return energy_pointing_game(saliency, masks)


BUILTIN_METRICS: tuple[Metric, ...] = (
    ConfidenceMetric("ad", "AD", False, "Average Drop: mean of max(0, p - o) / p (Grad-CAM++)"),
    ConfidenceMetric("ai", "AI", True, "Average Increase: share of images with o > p (Grad-CAM++, Opti-CAM)",
                     read=_as_outcome),
    ConfidenceMetric("ag", "AG", True, "Average Gain: mean of max(0, o - p) / (1 - p) (Opti-CAM)"),
    CausalMetric("insertion", "I", True, "Insertion: area under the class score while pixels are revealed, most "
                                         "salient first, onto a blurred copy (RISE)",
                 keeps=("insertion_curve",), mode="insertion"),
    CausalMetric("deletion", "D", False, "Deletion: area under the class score while pixels are removed, most "
                                         "salient first (RISE)", keeps=("deletion_curve",), mode="deletion"),
    PerturbationMetric("positive_perturbation", "+Pert", False, "accuracy while the most salient pixels are "
                                                                "zeroed, mean over the fractions (Chefer et al.)",
                       read=_mean_over_fractions, keeps=("positive_perturbation_curve",), mode="positive"),
    PerturbationMetric("negative_perturbation", "-Pert", True, "accuracy while the least salient pixels are "
                                                               "zeroed, mean over the fractions (Chefer et al.)",
                       read=_mean_over_fractions, keeps=("negative_perturbation_curve",), mode="negative"),
    PointingGame("pointing_game", "PG", True, "the map's maximum lies on the object mask (Zhang et al.)",
                 read=_as_outcome),
    EnergyPointingGame("energy_pointing_game", "EPG", True, "share of the map's mass on the object mask "
                                                            "(Score-CAM)"),
)
# How a multi-label model is scored (training's log, recognition's report): not a per-image metric of maps.
MEAN_AP = Metric("map", "mAP", True, "mean over classes of the average precision of the class scores "
                                     "(scikit-learn's non-interpolated AP; VOC's difficult-only images left out)")
# insertion and deletion also keep their curves (class score after each step): summaries average them, plots draw them
CURVE_METRICS: tuple[str, ...] = ("insertion", "deletion")
# the other columns of metrics.csv and keys of a summary: no metric may take them
RESERVED_KEYS = ("index", "path", "label", "method", "target", "prediction", "p", "o", NUM_IMAGES, NUM_PAIRS,
                 PER_CLASS, MEAN_AP.key, "positive_perturbation_accuracy", "negative_perturbation_accuracy")
_KEY = re.compile(r"[a-z][a-z0-9_]*")

_registered: dict[str, Metric] = {}


class _RegistryView(Sequence):
    """A read-only view of the registered metrics (or of one of their attributes) that follows registrations, so
    that a module holding it sees a metric registered after its import."""

    def __init__(self, part: Callable[[Metric], Any]) -> None:
        self._part = part

    def _items(self) -> tuple:
        return tuple(self._part(m) for m in _registered.values())

    def __getitem__(self, index: Union[int, slice]) -> Any:
        return self._items()[index]

    def __len__(self) -> int:
        return len(_registered)

    def __iter__(self) -> Iterator:
        return iter(self._items())

    def __repr__(self) -> str:
        return repr(self._items())


# the metrics every evaluation computes, in registration order (the built-ins first): tables and columns follow it
METRICS: Sequence[Metric] = _RegistryView(lambda m: m)
METRIC_KEYS: Sequence[str] = _RegistryView(lambda m: m.key)


def register_metric(declared: Metric) -> Metric:
    """Adds ``declared`` to every evaluation from now on: objrecon_imagenet.py computes it per image (and
    recognition_imagenet.py too for a :class:`LocalizationMetric`), writes its column of metrics.csv and its mean
    in summary.json, and the tables and pages show it. Returns it.

    Args:
        declared: an instance of a :class:`Metric` subclass that overrides ``compute`` (or ``localize``)
    """
    if not isinstance(declared, Metric):
        raise TypeError(f"register_metric: expected a Metric, got {type(declared).__name__}")
    key = declared.key
    if not _KEY.fullmatch(key):
        raise ValueError(f"register_metric: key {key!r} must be lower-case letters, digits and underscores, "
                         f"starting with a letter (it names a column of metrics.csv)")
    if key in _registered:
        raise ValueError(f"register_metric: a metric with key '{key}' is already registered "
                         f"({_registered[key].label}: {_registered[key].description})")
    if key in RESERVED_KEYS:
        raise ValueError(f"register_metric: key '{key}' is taken by metrics.csv or summary.json")
    outputs = {name: other for other in _registered.values() for name in (other.key, *other.keeps)}
    for name in (key, *declared.keeps):
        if name in outputs:
            raise ValueError(f"register_metric: metric '{key}' would return '{name}', an output of metric "
                             f"'{outputs[name].key}'")
    if type(declared).compute is Metric.compute or (isinstance(declared, LocalizationMetric) and
                                                     type(declared).localize is LocalizationMetric.localize):
        raise TypeError(f"register_metric: metric '{key}' declares no computation ({type(declared).__name__} "
                        f"overrides neither compute nor localize)")
    _registered[key] = declared
    return declared


def unregister_metric(key: str) -> Metric:
    """Takes the metric ``key`` out of the evaluations (e.g. to register an edited version); returns it."""
    if key not in _registered:
        raise KeyError(f"no metric '{key}' is registered: registered are {', '.join(_registered)}")
    return _registered.pop(key)


def metric(key: str) -> Metric:
    """The registered metric ``key``."""
    if key not in _registered:
        raise KeyError(f"no metric '{key}': declared are {', '.join(_registered)}")
    return _registered[key]


def localization_metrics() -> list[LocalizationMetric]:
    """The registered metrics scored from maps and object masks alone, in registration order."""
    return [declared for declared in _registered.values() if isinstance(declared, LocalizationMetric)]


for _builtin in BUILTIN_METRICS:
    register_metric(_builtin)
