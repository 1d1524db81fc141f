"""Score maps that another tool produced, from Python: the faithfulness metrics of any (N, h, w) maps.

The maps come from a .npy file of your tool, or, without one, from pytorch-grad-cam's EigenCAM called directly (an
explainer outside this project). Writes one CSV row per image (AD / AI / AG, insertion, deletion, +/- perturbation)
and prints the means.

    python examples/score_external_maps.py --run runs/example/ca --out scores.csv [--maps my_maps.npy]
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
from pytorch_grad_cam import EigenCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from utils.data import DataSource, Preprocessing, build_dataset
from utils.evaluation.model import load_trained_model
from utils.faithfulness import METRICS, evaluate_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a run folder of main_INets.py (or train())")
    parser.add_argument("--maps", type=Path, default=None, help="(N, h, w) maps of the first N validation images")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("scores.csv"))
    flags = parser.parse_args()

    model, config = load_trained_model(flags.run)
    model.eval()
    dataset = build_dataset(DataSource(), Preprocessing(config["imsize"], mean=config["mean"], std=config["std"]),
                            train=False)
    count = flags.images if flags.maps is None else len(np.load(flags.maps))
    images = torch.stack([dataset[i][0] for i in range(count)])
    labels = torch.tensor([dataset[i][1] for i in range(count)])
    if flags.maps is not None:
        maps = np.load(flags.maps)
    else:
        with EigenCAM(model, target_layers=[model.cam_target_layer]) as cam:
            maps = cam(images, targets=[ClassifierOutputTarget(int(label)) for label in labels])
    scores = evaluate_batch(model, images, maps, labels, config["mean"], config["std"])
    metrics = [m for m in METRICS if m.key in scores]  # the pointing games need object masks: not scored here
    keys = [m.key for m in metrics]
    values = {m.key: m.per_image(scores) for m in metrics}
    rows = [{"index": i, **{key: float(values[key][i]) for key in keys}} for i in range(count)]
    with flags.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["index", *keys])
        writer.writeheader()
        writer.writerows(rows)
    print("  ".join(f"{m.label} {m.summarize([row[m.key] for row in rows]):.2f}" for m in metrics))
    print(f"{count} images -> {flags.out}")


if __name__ == "__main__":
    main()
