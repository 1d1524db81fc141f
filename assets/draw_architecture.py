"""Draws assets/architecture.png: a CNN backbone with the CA stream beside it (python -m assets.draw_architecture).

The widths and attention grids are read off a real model built by ``models.create_model``, so the figure
stays true to the code.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from models import create_model  # noqa: E402


def _box(axis, x, y, w, h, text, colour):
    axis.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02", fc=colour, ec="#333",
                                  lw=1))
    axis.text(x, y, text, ha="center", va="center", fontsize=7.5)


def _arrow(axis, start, end, colour="#333", style="-|>"):
    axis.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=9, color=colour, lw=1))


def draw(path: Path, backbone: str = "resnet50", imsize: int = 224) -> Path:
    model = create_model(backbone, pool="ca", num_classes=1000).eval()
    with torch.no_grad():
        maps = model.forward_feature_maps(torch.zeros(1, 3, imsize, imsize))
    stages = ["stem"] + model.taps[1:] + ["last stage"]
    figure, axis = plt.subplots(figsize=(10, 3.4))
    gap = 1.7
    for k, (name, feature_map) in enumerate(zip(stages, maps)):
        x = 1.2 + k * gap
        channels, height, width = feature_map.shape[1:]
        _box(axis, x, 2.3, 1.25, 0.55, f"{name}\nF{k}: {channels}x{height}x{width}", "#dbe9f6")
        if k:
            _arrow(axis, (x - gap + 0.63, 2.3), (x - 0.63, 2.3))
        block = model.stream.blocks[k]
        _box(axis, x, 0.9, 1.25, 0.6, f"CA-{k}\nsoftmax(F{k}ᵀq/√{channels})\nLinear {block.in_dim}→{block.out_dim}",
             "#fde2c8")
        _arrow(axis, (x, 2.3 - 0.28), (x, 0.9 + 0.3), "#c0504d")
        _arrow(axis, (x - gap + 0.63 if k else x - 1.0, 0.9), (x - 0.63, 0.9), "#e67e22")
        axis.text(x - gap / 2 if k else x - 0.82, 1.0, f"q{k}", fontsize=7, color="#e67e22", ha="center")
    end = 1.2 + len(stages) * gap
    _box(axis, end, 0.9, 1.1, 0.5, "classifier\n(frozen fc)", "#d5f0d5")
    _arrow(axis, (end - gap + 0.63, 0.9), (end - 0.55, 0.9), "#e67e22")
    axis.text(end - gap / 2, 1.0, f"q{len(stages)}", fontsize=7, color="#e67e22", ha="center")
    axis.text(0.1, 2.95, f"{backbone} backbone (frozen)", fontsize=9, weight="bold")
    axis.text(0.1, 0.2, f"CA stream: learned CLS token q0 ~ N(1, 1), {model.num_stream_parameters():,} parameters; "
                        "replaces global average pooling", fontsize=8)
    axis.set_xlim(0, end + 0.8)
    axis.set_ylim(0, 3.2)
    axis.axis("off")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=130)
    plt.close(figure)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--out", default=str(Path(__file__).with_name("architecture.png")))
    options = parser.parse_args()
    print(draw(Path(options.out), options.backbone))
