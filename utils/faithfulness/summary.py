"""Per-image metric rows, their means and the fixed-width table, all read off the metric declarations."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .metrics import CURVE_METRICS, METRICS
from .protocol import NUM_PAIRS


def image_metrics(outputs: Mapping[str, torch.Tensor], k: int) -> dict[str, Any]:
    """Image ``k`` of an :func:`~utils.faithfulness.batch.evaluate_batch` output: ``target``, ``prediction``, ``p``,
    ``o``, every registered metric present, and the arrays they keep, e.g. the curves (arrays: compact in memory
    and in a distributed gather)."""
    row: dict[str, Any] = {"target": int(outputs["target"][k]), "prediction": int(outputs["prediction"][k]),
                           "p": float(outputs["p"][k]), "o": float(outputs["o"][k])}
    present = [metric for metric in METRICS if metric.key in outputs]
    for metric in present:
        row[metric.key] = metric.per_image(outputs)[k].item()
    for metric in present:
        for name in metric.keeps:
            row[name] = outputs[name][k].numpy()
    return row


def summarize(per_image: Sequence[Mapping[str, Any]], fractions: Sequence[float]) -> tuple[dict, dict]:
    """The means of every registered metric over images (x its scale), ``p``/``o``, the perturbation accuracy per
    fraction, the image count; and the mean insertion / deletion curves."""
    summary: dict[str, Any] = {}
    for metric in METRICS:
        value = metric.summarize([row[metric.key] for row in per_image if metric.key in row])
        if value is not None:
            summary[metric.key] = value
    for key in ("p", "o"):
        summary[key] = float(np.mean([row[key] for row in per_image])) if per_image else math.nan
    for mode in ("positive", "negative"):
        curves = [row[f"{mode}_perturbation_curve"] for row in per_image if f"{mode}_perturbation_curve" in row]
        if curves:
            accuracy = np.stack(curves).mean(0, dtype=np.float64) * 100
            summary[f"{mode}_perturbation_accuracy"] = dict(zip(map(str, fractions), accuracy.tolist()))
    summary["num_images"] = len(per_image)
    curves = {key: np.stack([row[f"{key}_curve"] for row in per_image]).mean(0, dtype=np.float64).tolist()
              for key in CURVE_METRICS} if per_image else {}
    return summary, curves


def format_table(results_by_label: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """A fixed-width table: one line per (run, method), the metrics x their scale (arrows: better direction); N
    counts images, or image-class pairs for multi-label models."""
    columns = [metric for metric in METRICS
               if any(metric.key in r for results in results_by_label.values() for r in results.values())]
    width = max(len(f"{label} {method}") for label, results in results_by_label.items() for method in results)
    head = f"{'run method':<{width}} " + " ".join(f"{m.label + m.arrow:>7}" for m in columns) + "       N"
    lines = [head, "-" * len(head)]
    for label, results in results_by_label.items():
        for method, r in results.items():
            cells = " ".join(f"{r[m.key]:7.2f}" if m.key in r else f"{'-':>7}" for m in columns)
            lines.append(f"{label + ' ' + method:<{width}} {cells} {r.get(NUM_PAIRS, r['num_images']):7d}")
    return "\n".join(lines)
