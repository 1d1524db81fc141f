"""What the evaluation pipelines return: the report they wrote and where their files are."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from utils.faithfulness import MEAN_AP
from utils.runtime.layout import EvaluationFolder


def path_text(path: Optional[Union[str, Path]]) -> Optional[str]:
    """A path setting as the reports record it (as typed; None stays None)."""
    return None if path is None else str(path)


@dataclass(frozen=True)
class RecognitionResult:
    """What :func:`~.recognition.recognise` measured: ``report``, the content of classification.json (top-1 / top-5
    or mAP, per class, the subset, model and data, the saliency settings, the pointing games), and its files in
    ``folder`` (on ranks other than 0 of a distributed run: the report without localisation, no file)."""

    report: dict[str, Any]
    folder: Path
    report_path: Path

    @property
    def predictions(self) -> Path:
        """predictions.csv: one row per evaluated image."""
        return EvaluationFolder(self.folder).predictions

    @property
    def maps(self) -> dict[str, Path]:
        """The saliency file of each method (``EvaluationFolder.load_maps`` reads one)."""
        return {name: Path(path) for name, path in self.report["files"].get("maps", {}).items()}

    @property
    def overlays(self) -> Optional[Path]:
        path = self.report["files"].get("overlays")
        return None if path is None else Path(path)

    @property
    def top1(self) -> Optional[float]:
        """Top-1 accuracy (%) of a single-label model, else None."""
        return self.report.get("top1")

    @property
    def mean_ap(self) -> Optional[float]:
        """mAP (%) of a multi-label model, else None."""
        return self.report.get(MEAN_AP.key)

    @property
    def localization(self) -> Optional[dict[str, Any]]:
        """The pointing games per method, where the images have object masks or boxes."""
        return self.report.get("localization")


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`~.objrecon.evaluate` measured: ``summary``, the content of summary.json (``results``: each
    method's metric means x100, ``curves``, the ``protocol`` card), and its files in ``folder``: ``metrics``
    (metrics.csv, one row per image-class pair and method), the curve plots, ``report_page`` (report.html, None
    without a gallery), ``compare_page`` (compare.html when compared with a comparable evaluation) and
    ``saved_maps``, the saliency file of each method computed and saved (``save_maps``)."""

    summary: dict[str, Any]
    folder: Path
    report_page: Optional[Path] = None
    compare_page: Optional[Path] = None
    saved_maps: dict[str, Path] = field(default_factory=dict)

    @property
    def results(self) -> dict[str, dict[str, Any]]:
        return self.summary["results"]

    @property
    def metrics(self) -> Path:
        return EvaluationFolder(self.folder).metrics

    @property
    def summary_path(self) -> Path:
        return EvaluationFolder(self.folder).summary

    @property
    def curves(self) -> dict[str, Path]:
        """The insertion / deletion plot of each method, and ``methods``: every method's curves in panels."""
        folder = EvaluationFolder(self.folder)
        return {name: folder.curves(name) for name in (*self.results, "methods")}

    def read_metrics(self) -> list[dict]:
        """metrics.csv's rows (values as text)."""
        return EvaluationFolder(self.folder).read_metrics()
