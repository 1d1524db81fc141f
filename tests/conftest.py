"""Shared fixtures: small built-in datasets and short training runs, written under pytest's temp folders."""
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session", autouse=True)
def builtin_cache(tmp_path_factory):
    """Keeps the default built-in dataset of every test (and subprocess) out of the user's cache."""
    cache = tmp_path_factory.mktemp("castream_cache")
    previous = os.environ.get("CASTREAM_DATA")
    os.environ["CASTREAM_DATA"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("CASTREAM_DATA", None)
    else:
        os.environ["CASTREAM_DATA"] = previous


@pytest.fixture(scope="session")
def small_builtin(tmp_path_factory):
    """A small built-in dataset at 32x32: 20 training and 8 validation images per class."""
    from utils.data import ensure_builtin_dataset
    return ensure_builtin_dataset(tmp_path_factory.mktemp("data") / "builtin32", seed=0, imsize=32,
                                  train_per_class=20, val_per_class=8)


@pytest.fixture(scope="session")
def builtin_flags(small_builtin) -> list[str]:
    """main_INets.py data flags for ``small_builtin``."""
    return ["--root_data", str(small_builtin / "images"), "--path_list", str(small_builtin / "train.csv"),
            "--val_list", str(small_builtin / "val.csv")]
