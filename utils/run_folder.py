"""The files a training run owns in its folder (``--store_dir``) and its per-epoch logs.

Layout: ``config.json`` (how to rebuild the model and its preprocessing), ``args.yaml``, ``log.csv``,
``last.pth`` (the whole training state, loadable with ``weights_only=True``), ``model.safetensors`` (latest),
``model_best.safetensors``, ``model_ema.safetensors``, ``checkpoint_epoch<N>.pth`` and
``tensorboard/events.out.tfevents.*``. Any other file in the folder is not the run's and is never removed.

Each epoch's save ends with ``last.pth``, the commit point: it holds the log rows, so a run killed anywhere
resumes from the last committed epoch and rebuilds ``log.csv`` and the TensorBoard scalars from them.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Mapping, Sequence

from torch.utils.tensorboard import SummaryWriter

from models import CONFIG_NAME
from models.weights import MODEL_WEIGHTS_NAME

from .checkpoint import BEST_WEIGHTS_NAME, TRAIN_STATE_NAME, atomic_write_leftovers
from .runtime.layout import write_csv

ARGS_NAME = "args.yaml"
LOG_NAME = "log.csv"
EMA_WEIGHTS_NAME = "model_ema.safetensors"
TENSORBOARD_DIRNAME = "tensorboard"
RUN_FILE_NAMES = (CONFIG_NAME, ARGS_NAME, LOG_NAME, TRAIN_STATE_NAME, MODEL_WEIGHTS_NAME, BEST_WEIGHTS_NAME,
                  EMA_WEIGHTS_NAME)
_PERIODIC_CHECKPOINT = re.compile(r"checkpoint_epoch\d+\.pth")
_EVENTS_PATTERN = "events.out.tfevents.*"


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
        files += [path for path in events.glob(_EVENTS_PATTERN) if path.is_file()]
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


def remove_stale_temporaries(folder: Path) -> None:
    """Deletes the temporaries that writes of a killed run left (none is ever renamed into place later)."""
    for path, target in atomic_write_leftovers(folder).items():
        if is_run_file_name(target):
            path.unlink(missing_ok=True)


def read_log_rows(folder: Path, last_epoch: int) -> list[dict]:
    """The rows of ``log.csv`` up to ``last_epoch``: the log of a training state saved without its rows."""
    path = folder / LOG_NAME
    if not path.is_file():
        return []
    with path.open(newline="") as file:
        return [row for row in csv.DictReader(file) if int(row["epoch"]) <= last_epoch]


class RunLog:
    """``log.csv`` and the TensorBoard scalars, one row per epoch.

    Both are rebuilt from the rows of the training state at every start: rows of an epoch that never committed
    are dropped, and rows that a kill kept from reaching the files are written again.
    """

    def __init__(self, folder: Path, rows: Sequence[Mapping]) -> None:
        self.path = folder / LOG_NAME
        self.rows = [dict(row) for row in rows]
        events = folder / TENSORBOARD_DIRNAME
        for path in events.glob(_EVENTS_PATTERN):
            path.unlink()
        self.writer = SummaryWriter(str(events))
        for row in self.rows:
            self._add_scalars(row)
        self.writer.flush()
        if self.rows:
            write_csv(self.path, self.rows)
        else:
            self.path.unlink(missing_ok=True)

    def _add_scalars(self, row: Mapping) -> None:
        for key, value in row.items():
            if key != "epoch" and value != "":
                self.writer.add_scalar(key, float(value), int(row["epoch"]))

    def append(self, row: Mapping) -> None:
        self.rows.append(dict(row))
        self._add_scalars(row)
        self.writer.flush()
        write_csv(self.path, self.rows)

    def close(self) -> None:
        self.writer.close()
