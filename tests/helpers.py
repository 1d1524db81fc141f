"""Small shortcuts the tests share."""
from __future__ import annotations

from pathlib import Path

from utils.runtime.layout import EvaluationFolder


def maps_file(folder: Path, method: str) -> Path:
    return EvaluationFolder(folder).maps(method)


def read_maps(folder: Path, method: str) -> dict:
    return EvaluationFolder.load_maps(maps_file(folder, method))
