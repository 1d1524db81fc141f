"""The steps that the experiment routines share: running one CLI with its log, whether a training finished, and
the data flags of the experiment datasets."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from utils.runtime.io import atomic_write_text
from utils.runtime.layout import RunFolder

REPO = Path(__file__).resolve().parents[2]
MULTI_LABEL_DATASETS = ("voc_builtin",)
DATASETS = ("builtin", "fashion_mnist", *MULTI_LABEL_DATASETS)


def run(command: list[str], log: Path) -> None:
    """Runs one CLI step; its output goes to ``log`` and a failure stops the experiment with the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log.open("w") as file:
        result = subprocess.run([sys.executable, *command], cwd=REPO, stdout=file, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    tail = log.read_text().strip().splitlines()[-1:] or [""]
    if result.returncode:
        raise SystemExit(f"error: step failed ({' '.join(command[:1])}), see {log}: {tail[0]}")
    # the step's duration stays with its outputs, so a rerun that reuses them still reports the experiment's time
    atomic_write_text(log.with_suffix(".seconds"), f"{seconds:.1f}\n")
    print(f"  {' '.join(command[:1])} done in {seconds:.0f}s ({log.name})", flush=True)


def recorded_minutes(folder: Path) -> float:
    """The minutes of every step run under ``folder``, from the durations :func:`run` leaves beside their logs."""
    return sum(float(seconds.read_text()) for seconds in folder.rglob("*.seconds")) / 60


def trained(run: RunFolder, epochs: int) -> bool:
    """Whether the training of ``run`` has logged all its epochs: its weights are written after every epoch, so a
    training killed after its first one has them too."""
    return len(run.read_log(epochs)) >= epochs


def fashion_mnist_root(out: Path, train_per_class: int, val_per_class: int, imsize: int) -> Path:
    """The Fashion-MNIST subset of the experiments (images, train.csv, val.csv), installing Debian's data first."""
    from utils.data import fashion_mnist_available, prepare_fashion_mnist
    if not fashion_mnist_available():
        print("installing Debian's dataset-fashion-mnist ...", flush=True)
        subprocess.run(["bash", str(REPO / ".ci" / "install_data.sh")], check=True)
    return prepare_fashion_mnist(out / "fashion_mnist_data", train_per_class=train_per_class,
                                 val_per_class=val_per_class, seed=0, imsize=imsize)
