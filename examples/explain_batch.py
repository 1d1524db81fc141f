"""Explain a batch with three methods, from Python: the maps of one run's model on built-in validation images, drawn
side by side in one PNG.

    python examples/explain_batch.py --run runs/example/ca --out explained.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from utils.data import DataSource, Preprocessing, build_dataset
from utils.evaluation.model import load_trained_model
from utils.explain import create_saliency
from utils.reports.plots import save_overlay_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a run folder of main_INets.py (or train())")
    parser.add_argument("--out", type=Path, default=Path("explained.png"))
    parser.add_argument("--images", type=int, default=6, help="the first N images of the built-in validation list")
    parser.add_argument("--methods", nargs=3, default=None,
                        help="three method names (default: gradcam, scorecam and the stream's attention, or "
                             "gradcam++ for a GAP model)")
    flags = parser.parse_args()

    model, config = load_trained_model(flags.run)
    model.eval()
    methods = flags.methods or ["gradcam", "scorecam", "attention" if config["pool"] != "gap" else "gradcam++"]
    dataset = build_dataset(DataSource(), Preprocessing(config["imsize"], mean=config["mean"], std=config["std"]),
                            train=False)
    images = torch.stack([dataset[i][0] for i in range(flags.images)])
    labels = torch.tensor([dataset[i][1] for i in range(flags.images)])
    maps = {}
    for name in methods:
        with create_saliency(name, model) as method:  # hooks released on exit
            maps[name] = method(images, targets=labels)
    names = config.get("class_names") or [str(c) for c in range(config["classes"])]
    save_overlay_grid(flags.out, images, maps, [names[int(label)] for label in labels], config["mean"],
                      config["std"])
    print(f"{', '.join(methods)} on {len(images)} images -> {flags.out}")


if __name__ == "__main__":
    main()
