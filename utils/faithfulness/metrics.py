"""Every faithfulness metric, declared once: its key (the column of metrics.csv and the key of summary.json), its
label in tables and plots, which direction is better, the scale of its summary and how its per-image value is read
from :func:`~utils.faithfulness.batch.evaluate_batch`'s outputs. Reports, tables, plots and the experiment scripts
read these declarations; nothing else spells a metric."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import torch


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
    key: str
    label: str
    higher_is_better: bool
    description: str
    # the summary reports scale x the mean over images (x100: every metric is a fraction or a 0/1 outcome)
    scale: float = 100.0
    # per-image values (N,) from the batch output stored under ``key``
    read: Callable[[torch.Tensor], torch.Tensor] = field(default=_as_float, repr=False)
    # computed only where object masks exist
    needs_masks: bool = False

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"

    def per_image(self, outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.read(outputs[self.key])

    def summarize(self, values: Sequence[float]) -> Optional[float]:
        """``scale`` x the mean over images (None when no image has a value)."""
        values = [v for v in values if v is not None]
        return self.scale * float(np.mean(np.asarray(values, dtype=np.float64))) if values else None


METRICS: tuple[Metric, ...] = (
    Metric("ad", "AD", False, "Average Drop: mean of max(0, p - o) / p (Grad-CAM++)"),
    Metric("ai", "AI", True, "Average Increase: share of images with o > p (Grad-CAM++, Opti-CAM)",
           read=_as_outcome),
    Metric("ag", "AG", True, "Average Gain: mean of max(0, o - p) / (1 - p) (Opti-CAM)"),
    Metric("insertion", "I", True, "Insertion: area under the class score while pixels are revealed, most salient "
                                   "first, onto a blurred copy (RISE)"),
    Metric("deletion", "D", False, "Deletion: area under the class score while pixels are removed, most salient "
                                   "first (RISE)"),
    Metric("positive_perturbation", "+Pert", False, "accuracy while the most salient pixels are zeroed, mean over "
                                                    "the fractions (Chefer et al.)", read=_mean_over_fractions),
    Metric("negative_perturbation", "-Pert", True, "accuracy while the least salient pixels are zeroed, mean over "
                                                   "the fractions (Chefer et al.)", read=_mean_over_fractions),
    Metric("pointing_game", "PG", True, "the map's maximum lies on the object mask (Zhang et al.)",
           read=_as_outcome, needs_masks=True),
    Metric("energy_pointing_game", "EPG", True, "share of the map's mass on the object mask (Score-CAM)",
           needs_masks=True),
)
METRIC_KEYS: tuple[str, ...] = tuple(metric.key for metric in METRICS)
# How a multi-label model is scored (training's log, recognition's report): not a per-image metric of maps.
MEAN_AP = Metric("map", "mAP", True, "mean over classes of the average precision of the class scores "
                                     "(scikit-learn's non-interpolated AP; VOC's difficult-only images left out)")
# Summary keys of multi-label evaluations, beside the metrics: a mean is over image-class pairs (NUM_PAIRS of them,
# on NUM_IMAGES images), and PER_CLASS holds the same means over the pairs of each class.
NUM_IMAGES, NUM_PAIRS, PER_CLASS = "num_images", "num_pairs", "per_class"
# insertion and deletion also keep their curves (class score after each step)
CURVE_METRICS: tuple[str, ...] = ("insertion", "deletion")


def metric(key: str) -> Metric:
    for declared in METRICS:
        if declared.key == key:
            return declared
    raise KeyError(f"no metric '{key}': declared are {', '.join(METRIC_KEYS)}")
