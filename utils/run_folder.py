"""The files a training run owns in its folder (``--store_dir``), so one run never mixes with another.

Layout: ``config.json``, ``args.yaml``, ``log.csv``, ``last.pth``, ``model.safetensors``,
``model_best.safetensors``, ``model_ema.safetensors``, ``checkpoint_epoch<N>.pth`` and
``tensorboard/events.out.tfevents.*``. Any other file in the folder is not the run's and is never removed.
"""
from __future__ import annotations

import re
from pathlib import Path

from models import CONFIG_NAME
from models.weights import MODEL_WEIGHTS_NAME

from .checkpoint import BEST_WEIGHTS_NAME, TRAIN_STATE_NAME

ARGS_NAME = "args.yaml"
LOG_NAME = "log.csv"
EMA_WEIGHTS_NAME = "model_ema.safetensors"
TENSORBOARD_DIRNAME = "tensorboard"
RUN_FILE_NAMES = (CONFIG_NAME, ARGS_NAME, LOG_NAME, TRAIN_STATE_NAME, MODEL_WEIGHTS_NAME, BEST_WEIGHTS_NAME,
                  EMA_WEIGHTS_NAME)
_PERIODIC_CHECKPOINT = re.compile(r"checkpoint_epoch\d+\.pth")


def checkpoint_name(epoch: int) -> str:
    return f"checkpoint_epoch{epoch}.pth"


def is_run_file_name(name: str) -> bool:
    return name in RUN_FILE_NAMES or _PERIODIC_CHECKPOINT.fullmatch(name) is not None


def run_files(folder: Path) -> list[Path]:
    """The files of ``folder`` that the run layout names, TensorBoard events included."""
    if not folder.is_dir():
        return []
    files = [path for path in folder.iterdir() if path.is_file() and is_run_file_name(path.name)]
    events = folder / TENSORBOARD_DIRNAME
    if events.is_dir():
        files += [path for path in events.glob("events.out.tfevents.*") if path.is_file()]
    return sorted(files)


def remove_run_files(folder: Path) -> None:
    """Deletes the previous run's files (``--overwrite``), keeping anything the layout does not name."""
    for path in run_files(folder):
        path.unlink()
    events = folder / TENSORBOARD_DIRNAME
    if events.is_dir() and not any(events.iterdir()):
        events.rmdir()


def check_not_a_run(folder: Path) -> None:
    """Refuses a folder that holds a run: writing into it would mix two runs' files."""
    found = run_files(folder)
    if found:
        names = ", ".join(str(path.relative_to(folder)) for path in found[:3]) + (", ..." if len(found) > 3 else "")
        raise ValueError(f"--store_dir {folder} already holds a run ({names}); pass --resume to continue it or "
                         f"--overwrite to replace it")
