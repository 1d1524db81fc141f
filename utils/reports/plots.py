"""Figures of an evaluation: the overlay grid (images with each method's map) and insertion / deletion curves."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence, Union

import numpy as np
import torch

from utils.data import denormalize
from utils.explain import overlay
from utils.faithfulness import auc, metric
from utils.runtime.io import atomic_write

PathLike = Union[str, Path]


def to_uint8_image(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A normalised (3, H, W) model input as an RGB uint8 (H, W, 3) picture."""
    pixels = denormalize(image.detach().float().cpu(), mean, std)
    return (pixels.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def save_overlay_grid(path: PathLike, images: torch.Tensor, maps_by_method: Mapping[str, torch.Tensor],
                      titles: Sequence[str], mean: Sequence[float], std: Sequence[float]) -> Path:
    """A PNG grid: one row per image (the image, then each method's map over it), titled with class names."""
    methods = list(maps_by_method)
    rows, cols = len(images), 1 + len(methods)
    figure, axes = _pyplot().subplots(rows, cols, figsize=(2.2 * cols, 2.3 * rows), squeeze=False)
    for row, image in enumerate(images):
        picture = to_uint8_image(image, mean, std)
        axes[row, 0].imshow(picture)
        axes[row, 0].set_title(titles[row], fontsize=7)
        for col, method in enumerate(methods, start=1):
            axes[row, col].imshow(overlay(picture, maps_by_method[method][row]))
            if row == 0:
                axes[row, col].set_title(method, fontsize=8)
    for axis in axes.flat:
        axis.axis("off")
    figure.tight_layout()
    return _save_figure(figure, path)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on clusters and CI
    import matplotlib.pyplot as plt
    return plt


def _draw_curves(axis, curves: Mapping[str, np.ndarray], title: str, ylabel: str) -> None:
    """One line per label over the fraction of pixels changed, its AUC (x100, trapezoid) in the legend."""
    for label, curve in curves.items():
        curve = np.asarray(curve, dtype=float)
        area = float(auc(torch.from_numpy(curve))) if len(curve) > 1 else float(curve[0])
        axis.plot(np.linspace(0, 1, len(curve)), curve, label=f"{label} (AUC {100 * area:.1f})")
    axis.set_xlabel("fraction of pixels")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.set_xlim(0, 1)
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)


def panel_title(key: str) -> str:
    """A curve panel's title from the metric's declaration, e.g. ``insertion (I, higher is better)``."""
    declared = metric(key)
    return f"{key} ({declared.label}, {'higher' if declared.higher_is_better else 'lower'} is better)"


def save_curve_plot(path: PathLike, curves: Mapping[str, np.ndarray], title: str, ylabel: str = "class score"
                    ) -> Path:
    """Mean curves (one line per label, e.g. ``insertion``) over the fraction of pixels changed."""
    figure, axis = _pyplot().subplots(figsize=(4.5, 3.4))
    _draw_curves(axis, curves, title, ylabel)
    figure.tight_layout()
    return _save_figure(figure, path)


def save_curve_panels(path: PathLike, panels: Mapping[str, Mapping[str, np.ndarray]], title: str,
                      ylabel: str = "class score") -> Path:
    """Side-by-side panels of mean curves, one per curve metric: ``{"insertion": {label: curve}, ...}``."""
    figure, axes = _pyplot().subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for axis, (key, curves) in zip(axes[0], panels.items()):
        _draw_curves(axis, curves, panel_title(key), ylabel)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return _save_figure(figure, path)


def save_learning_curves(path: PathLike, logs: Mapping[str, Sequence[Mapping[str, str]]], title: str,
                         split: str = "held-out") -> Path:
    """Per-epoch curves of training runs (their ``log.csv`` rows), one line per run in each panel: the ``split``
    images' score (accuracy, or mAP for multi-label runs) and loss, and the training loss; GAP runs dashed."""
    rows = [row for run in logs.values() for row in run]
    score, score_label = ("val_map", "mAP (%)") if rows and "val_map" in rows[0] else ("val_acc", "accuracy (%)")
    panels = ((score, f"{split} {score_label}"), ("val_loss", f"{split} loss"), ("train_loss", "training loss"))
    figure, axes = _pyplot().subplots(1, len(panels), figsize=(5.0 * len(panels), 3.8), squeeze=False)
    for axis, (key, label) in zip(axes[0], panels):
        for name, run in logs.items():
            axis.plot([int(r["epoch"]) for r in run], [float(r[key]) for r in run], marker=".", label=name,
                      linestyle="--" if name.startswith("GAP") else "-")
        axis.set_xlabel("epoch")
        axis.set_title(label)
        axis.grid(alpha=0.3)
        if key.endswith("loss"):
            axis.set_yscale("log")
    axes[0][-1].legend(fontsize=7)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return _save_figure(figure, path)


def _save_figure(figure, path: PathLike) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    _pyplot().close(figure)
    return atomic_write(path, lambda file: file.write(buffer.getvalue()))
