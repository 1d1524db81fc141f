"""Small shortcuts the tests share."""
from __future__ import annotations

from pathlib import Path

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
