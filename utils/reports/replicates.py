"""Evaluation folders read back as replicates of configurations (a label: GAP, CA; its folders: the seeds) and the
paired differences of every label to the baseline label, with their intervals (:mod:`utils.faithfulness.paired`).

Pairing: the k-th folder of a label is paired with the k-th folder of the baseline (the same seed), and within
them the rows of the same image (multi-label: image-class pair); the image is the cluster that the bootstrap and the
sign-flip test resample, so all seeds' rows of an image move together. An experiment's ``per_image.csv`` (one row
per seed, pooling, method and image) read back gives the same replicates, keyed by seed
(:func:`replicates_from_rows`), so anyone can recompute its differences from the published file alone
(:func:`replicate_differences`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from utils.data import MULTI_LABEL
from utils.faithfulness import METRICS, NUM_PAIRS, Metric, PairedDifference, paired_difference
from utils.runtime.layout import EvaluationFolder

PathLike = Union[str, Path]
ACCURACY = Metric("accuracy", "Acc", True, "top-1 accuracy on the images scored with the method")


@dataclass
class Evaluation:
    """One objrecon folder: its summary and, per method, its per-image rows (metrics.csv, numbers parsed)."""

    folder: EvaluationFolder
    label: str
    summary: dict
    images: dict[str, dict[Union[int, str], dict[str, Any]]]

    def accuracy(self, method: str) -> Optional[float]:
        """Top-1 accuracy (%) on the images scored with ``method`` (multi-label: the top-1 class is one of the classes
        present; None for folders without predictions)."""
        rows = self.images[method].values()
        if not rows or any(row.get("prediction") is None for row in rows):
            return None
        return 100.0 * float(np.mean([row["correct"] for row in rows]))


def read_evaluation(path: PathLike, label: Optional[str] = None) -> Evaluation:
    """An objrecon folder (or its summary.json), with one line naming the folder when it is not one."""
    path = Path(path)
    folder = EvaluationFolder(path if path.is_dir() or not path.suffix else path.parent)
    summary = EvaluationFolder.read_summary(folder.path, flag="evaluation folder")
    if not folder.metrics.is_file():
        raise FileNotFoundError(f"evaluation folder {folder.path} has no {folder.METRICS}: rerun objrecon_imagenet.py "
                                f"there")
    # a multi-label model's rows are image-class pairs, named row-class as in report.html
    pairs = summary.get("protocol", {}).get("task") == MULTI_LABEL
    images: dict[str, dict[Union[int, str], dict[str, Any]]] = {method: {} for method in summary["results"]}
    for row in folder.read_metrics():
        if row["method"] in images:
            key = f"{row['index']}-{row['target']}" if pairs else int(row["index"])
            images[row["method"]][key] = _numbers(row, pairs)
    for method, result in summary["results"].items():
        if len(images[method]) != result.get(NUM_PAIRS, result["num_images"]):
            raise ValueError(f"evaluation folder {folder.path}: its {folder.METRICS} has {len(images[method])} images "
                             f"for {method}, its {folder.SUMMARY} {result['num_images']}: rerun objrecon_imagenet.py "
                             f"there")
    return Evaluation(folder, label or summary.get("label") or folder.path.name, summary, images)


def _numbers(row: dict[str, str], pairs: bool) -> dict[str, Any]:
    """A metrics.csv row's numbers; ``label`` is the explained class of a multi-label pair."""
    prediction = int(row["prediction"]) if row.get("prediction") else None
    label = int(row["target"]) if pairs else int(row["label"])
    correct = None if prediction is None else str(prediction) in row["label"].split() if pairs else prediction == label
    parsed: dict[str, Any] = {"label": label, "prediction": prediction, "correct": correct}
    for metric in METRICS:
        if row.get(metric.key):
            parsed[metric.key] = float(row[metric.key])
    return parsed


def check_same_images(evaluations: Sequence[Evaluation]) -> None:
    """Every folder scored a method on the same images as the first folder with that method (one line if not)."""
    first: dict[str, Evaluation] = {}
    for evaluation in evaluations:
        for method, rows in evaluation.images.items():
            reference = first.setdefault(method, evaluation)
            expected = reference.images[method]
            if len(rows) != len(expected):
                raise ValueError(f"evaluation folder {evaluation.folder.path} scored {method} on {len(rows)} images, "
                                 f"{reference.folder.path} on {len(expected)}: compare evaluations of the same images "
                                 f"(same data, --fraction, --seed, --indexes)")
            if set(rows) != set(expected):
                raise ValueError(f"evaluation folder {evaluation.folder.path} scored {method} on other images than "
                                 f"{reference.folder.path}: compare evaluations of the same images (same data, "
                                 f"--fraction, --seed, --indexes)")


def group_by_label(evaluations: Sequence[Evaluation]) -> dict[str, list[Evaluation]]:
    """Replicates per label, labels in the order they first appear (the first is the baseline)."""
    groups: dict[str, list[Evaluation]] = {}
    for evaluation in evaluations:
        groups.setdefault(evaluation.label, []).append(evaluation)
    return groups


@dataclass(frozen=True)
class LabelDifference:
    """``label`` - ``baseline`` on one method and metric (in the table's units), over the paired rows."""

    method: str
    metric: str
    baseline: str
    label: str
    result: PairedDifference

    def record(self) -> dict:
        """results.json's record: method, metric, baseline, label, mean, ci_low, ci_high, p_value, pairs."""
        result = self.result
        return {"method": self.method, "metric": self.metric, "baseline": self.baseline, "label": self.label,
                "mean": result.mean, "ci_low": result.ci_low, "ci_high": result.ci_high, "p_value": result.p_value,
                "pairs": result.pairs}


def image_value(row: dict[str, Any], metric: Metric) -> Optional[float]:
    """A per-image value in the table's units: the metric x its scale (accuracy: 100 if correct)."""
    if metric.key == ACCURACY.key:
        return None if row.get("correct") is None else ACCURACY.scale * float(row["correct"])
    value = row.get(metric.key)
    return None if value is None or not math.isfinite(value) else metric.scale * value


def paired_values(baseline: dict[Union[int, str], dict[str, Any]], other: dict[Union[int, str], dict[str, Any]],
                  metric: Metric) -> tuple[list[float], list[Union[int, str]]]:
    """(other - baseline differences, their image keys) over the images (multi-label: image-class pairs) that both
    row sets scored with a finite value of ``metric``."""
    differences: list[float] = []
    clusters: list[Union[int, str]] = []
    for key, base_row in baseline.items():
        mine_row = other.get(key)
        if mine_row is None:
            continue
        a, b = image_value(base_row, metric), image_value(mine_row, metric)
        if a is not None and b is not None:
            differences.append(b - a)
            clusters.append(key)
    return differences, clusters


def label_differences(groups: dict[str, list[Evaluation]], methods: Sequence[str], metrics: Sequence[Metric],
                      seed: int = 0) -> list[LabelDifference]:
    """Every label's paired difference to the first (baseline) label, per method and metric (accuracy first); the
    k-th folder of a label is the replicate paired with the k-th folder of the baseline."""
    replicates = {label: dict(enumerate(e.images for e in group)) for label, group in groups.items()}
    return _differences_to(replicates, next(iter(groups)), methods, metrics, seed)


def _differences_to(replicates: Replicates, baseline: str, methods: Sequence[str], metrics: Sequence[Metric],
                    seed: int) -> list[LabelDifference]:
    """Every other label - ``baseline`` per method and metric (accuracy first), paired on (replicate, image)."""
    found = []
    for label, by_replicate in replicates.items():
        if label == baseline:
            continue
        for method in methods:
            row_pairs = [(replicates[baseline][replicate][method], rows[method])
                         for replicate, rows in by_replicate.items()
                         if method in rows and method in replicates[baseline].get(replicate, {})]
            found += filter(None, (_difference(row_pairs, method, declared, baseline, label, seed)
                                   for declared in (ACCURACY, *metrics)))
    return found


def method_differences(replicates: Sequence[dict[str, dict[Union[int, str], dict[str, Any]]]], label: str,
                       baseline: str, methods: Sequence[str], metrics: Sequence[Metric], seed: int = 0
                       ) -> list[LabelDifference]:
    """Within one label: every method - ``baseline`` (a method) per metric, paired on the images both methods
    scored in the same replicate (``replicates``: per seed, {method: its rows}); the record's baseline is the
    method subtracted and its label the configuration."""
    found = []
    for method in methods:
        if method == baseline:
            continue
        row_pairs = [(rows[baseline], rows[method]) for rows in replicates if baseline in rows and method in rows]
        # accuracy is the model's: the same under every method
        found += filter(None, (_difference(row_pairs, method, declared, baseline, label, seed) for declared in metrics))
    return found


def _difference(row_pairs: Sequence[tuple[dict, dict]], method: str, metric: Metric, baseline: str, label: str,
                seed: int) -> Optional[LabelDifference]:
    """The paired difference over every (baseline rows, other rows) pair of replicates; None when no image pairs."""
    differences: list[float] = []
    clusters: list[Union[int, str]] = []
    for base_rows, rows in row_pairs:
        values, keys = paired_values(base_rows, rows, metric)
        differences += values
        clusters += keys
    if not differences:
        return None
    return LabelDifference(method, metric.key, baseline, label, paired_difference(differences, clusters, seed=seed))


Replicates = dict[str, dict[int, dict[str, dict[Union[int, str], dict[str, Any]]]]]


def replicates_from_rows(rows: Iterable[Mapping[str, str]]) -> Replicates:
    """``per_image.csv`` rows (seed, pooling, method, index[, target], correct, metric keys as in metrics.csv) read
    back as {pooling: {seed: {method: {image key: numbers}}}}; labels in the order they first appear."""
    found: Replicates = {}
    for row in rows:
        key: Union[int, str] = f"{row['index']}-{row['target']}" if row.get("target") else int(row["index"])
        numbers: dict[str, Any] = {"correct": None if row.get("correct") in (None, "") else bool(int(row["correct"]))}
        numbers.update({m.key: float(row[m.key]) for m in METRICS if row.get(m.key) not in (None, "")})
        by_seed = found.setdefault(row["pooling"], {}).setdefault(int(row["seed"]), {})
        by_seed.setdefault(row["method"], {})[key] = numbers
    return found


def replicate_differences(replicates: Replicates, baseline: str, methods: Sequence[str], metrics: Sequence[Metric],
                          seed: int = 0) -> list[LabelDifference]:
    """Every other label - ``baseline`` per method and metric (accuracy first), paired on (seed, image); then,
    within each label, every method - the first of ``methods``."""
    found = _differences_to(replicates, baseline, methods, metrics, seed)
    for label, by_seed in replicates.items():
        found += method_differences(list(by_seed.values()), label, methods[0], methods, metrics, seed)
    return found
