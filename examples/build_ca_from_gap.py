"""Build a CA model from a GAP run, the paper's protocol, from Python.

Trains a GAP baseline on the built-in shapes, then the CA stream on it: backbone and classifier taken from the GAP
run and frozen, only the stream learns (AdamW at 1e-4, the recipe of configs/ca_stream_miniature.yaml). Prints both
runs' validation accuracy.

    python examples/build_ca_from_gap.py --out runs/example        # a few minutes on a CPU
"""
from __future__ import annotations

import argparse
from pathlib import Path

from models import ModelSettings
from utils.training import OptimizerSettings, RunSettings, TrainingDataSettings, TrainingSettings, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/example"), help="folder of the two run folders")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--imsize", type=int, default=64)
    parser.add_argument("--fraction", type=float, default=1.0, help="share of the built-in training images")
    parser.add_argument("--gap_epochs", type=int, default=8)
    parser.add_argument("--ca_epochs", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    flags = parser.parse_args()

    data = TrainingDataSettings(imsize=flags.imsize, fraction=flags.fraction)
    gap = train(TrainingSettings(
        RunSettings(flags.out / "gap", epochs=flags.gap_epochs, batch_size=32, workers=flags.workers, overwrite=True),
        data=data, model=ModelSettings(flags.backbone, pool="gap", pretrained=False)))
    ca = train(TrainingSettings(
        RunSettings(flags.out / "ca", epochs=flags.ca_epochs, batch_size=32, workers=flags.workers, overwrite=True),
        data=data,
        model=ModelSettings(flags.backbone, pool="ca", init_from=str(gap.run_dir), freeze=True),
        optimizer=OptimizerSettings(lr=1e-4)))
    for name, result in (("GAP", gap), ("CA", ca)):
        print(f"{name}: best {result.score_key} {result.best_score:.2f}% at epoch {result.best_epoch} "
              f"-> {result.run_dir}")


if __name__ == "__main__":
    main()
