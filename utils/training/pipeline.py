"""Training as a function: :func:`train` runs :class:`~.settings.TrainingSettings` and returns a
:class:`TrainingResult` that describes the run folder it wrote."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .settings import TrainingSettings


@dataclass(frozen=True)
class TrainingResult:
    """What a run left, as its files say it.

    Args:
        run_dir: the run folder (``config.json``, ``args.yaml``, ``log.csv``, the weights, ``last.pth``).
        config: its ``config.json``: what rebuilds the model and its preprocessing.
        rows: the rows of ``log.csv``, one per epoch (a resumed run's earlier epochs included).
        score_key: the column suffix of the task's headline score (``acc``, or ``map`` for multi-label data).
        best_score: the best epoch's score: validation's, else training's where nothing is held out
            (``model_best.safetensors`` holds its weights); -inf before any epoch.
        best_epoch: that epoch (0 before any).
    """

    run_dir: Path
    config: dict[str, Any]
    rows: tuple[dict[str, Any], ...]
    score_key: str
    best_score: float
    best_epoch: int

    @property
    def last(self) -> dict[str, Any]:
        """The last epoch's row of ``log.csv`` (empty before any epoch)."""
        return dict(self.rows[-1]) if self.rows else {}


def train(settings: TrainingSettings, record: Optional[Mapping[str, Any]] = None) -> TrainingResult:
    """Trains as ``settings`` say, writing the run folder ``settings.run.store_dir`` (only rank 0 writes under
    DDP); ``record`` is what its ``args.yaml`` records (default: ``settings.as_record()``). The folder is locked for
    the run's life (:class:`~utils.runtime.lock.FolderLock`): a second run into it fails with one line naming the
    holder. Under DDP rank 0 takes the lock, before the rendezvous; the launcher ends the other ranks when it fails
    (torchrun does; srun with ``--kill-on-bad-exit``).

    Example::

        result = train(TrainingSettings(RunSettings("runs/r18", epochs=2), model=ModelSettings("resnet18")))
        print(result.best_score, result.run_dir / "model_best.safetensors")
    """
    from utils.runtime.distributed import detect_environment
    from utils.runtime.lock import FolderLock

    from .trainer import Trainer  # torch, the data and the models: not needed to parse the flags

    with FolderLock(settings.run.store_dir, "--store_dir", enabled=detect_environment().is_main):
        return Trainer(settings, record=record).fit()
