"""Small shortcuts the tests share."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

import main_INets
from utils.runtime.layout import EvaluationFolder


def maps_file(folder: Path, method: str) -> Path:
    return EvaluationFolder(folder).maps(method)


def read_maps(folder: Path, method: str) -> dict:
    return EvaluationFolder.load_maps(maps_file(folder, method))


def error_of(argv: list[str]) -> str:
    """main_INets.py's one-line error for ``argv``."""
    with pytest.raises(SystemExit) as info:
        main_INets.main(argv)
    message = str(info.value.code)
    assert "\n" not in message and message.startswith("error: ")
    return message


def label_matrix(dataset) -> np.ndarray:
    """(N, C) int8 label vectors of every row of a multi-label dataset."""
    return np.asarray(dataset.targets, dtype=np.int8).reshape(len(dataset.targets), len(dataset.classes))


def require_installed(missing: Optional[str], required: bool = False) -> None:
    """Skips the test when a system package is ``missing`` (the reason); fails instead when ``required`` or under CI,
    which installs them all (.ci/run): a test CI skips is a test that cannot fail."""
    if missing is None:
        return
    if required or os.environ.get("CI"):
        pytest.fail(missing)
    pytest.skip(missing)
