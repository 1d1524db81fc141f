"""Run folders and checkpoints: atomic writes, safe loading, exact resume.

A run folder holds ``config.json`` (how to rebuild the model and its preprocessing), ``model.safetensors``
(the latest weights), ``model_best.safetensors`` (best validation accuracy), ``last.pth`` (the whole
training state, loadable with ``weights_only=True``), ``checkpoint_epoch<N>.pth`` every ``--s_iterations``
epochs, ``args.yaml``, ``log.csv`` and TensorBoard events.
"""
from __future__ import annotations

import csv
import io
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

import numpy as np
import torch
import yaml
from safetensors.torch import save as safetensors_bytes

PathLike = Union[str, Path]
TRAIN_STATE_NAME = "last.pth"
BEST_WEIGHTS_NAME = "model_best.safetensors"


def current_umask() -> int:
    """The process's umask, which the modes of files this project creates follow."""
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Writes through a temporary file in the same folder, then renames it over ``path``: a run killed
    mid-write leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        # mkstemp creates the file private (0600); give it the mode a plain open() would have
        os.chmod(tmp_name, 0o666 & ~current_umask())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def ensure_writable_dir(path: PathLike, flag: str) -> Path:
    """Creates ``path`` if needed and checks that files can be written there, before any work is done (one line
    naming ``flag`` otherwise)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise OSError(f"{flag} {path} is not a writable folder: {error.strerror or error}") from None
    return path


def atomic_write_text(path: PathLike, text: str) -> Path:
    return atomic_write(path, lambda file: file.write(text.encode()))


def save_json(path: PathLike, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def save_yaml(path: PathLike, data: Mapping) -> Path:
    return atomic_write_text(path, yaml.safe_dump(dict(data), sort_keys=False))


def save_weights(path: PathLike, state_dict: Mapping[str, torch.Tensor], metadata: Optional[dict] = None) -> Path:
    """Weights as safetensors (contiguous CPU copies; shared storage is not allowed there)."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    data = safetensors_bytes(tensors, metadata=meta)
    return atomic_write(path, lambda file: file.write(data))


def save_training_state(path: PathLike, state: Mapping[str, Any]) -> Path:
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    return atomic_write(path, lambda file: file.write(buffer.getvalue()))


def load_training_state(path: PathLike) -> dict:
    """A training state written by ``save_training_state``; never unpickles code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"training state not found: {path}") from None
    except Exception as error:
        raise ValueError(f"cannot read training state {path}: {type(error).__name__}: {error}".splitlines()[0]) \
            from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class CsvLog:
    """Appends one row per epoch to ``log.csv``; a resumed run drops rows past the resumed epoch."""

    def __init__(self, path: PathLike, resume_epoch: int = 0) -> None:
        self.path = Path(path)
        rows = []
        if resume_epoch and self.path.exists():
            with self.path.open(newline="") as file:
                rows = [row for row in csv.DictReader(file) if int(row["epoch"]) <= resume_epoch]
        self.rows: list[dict] = rows

    def append(self, row: dict) -> None:
        self.rows.append(row)
        fields = list(dict.fromkeys(k for r in self.rows for k in r))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=fields)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, text.getvalue())
