"""The per-channel CAMs (Score-CAM, Ablation-CAM) and FullGrad: this project's fast paths against pytorch-grad-cam,
measured in the same run on a random-init model (nothing downloaded).

    python -m bench.bench_perchannel --model resnet50 --imsize 224 --images 1
    python -m bench.bench_perchannel --device cuda --images 8 --fullgrad-images 64 --package-images 8 \
        --out bench/results/gpu/perchannel_gpu.json

Timed per method: the package as the adapter runs it (``engine='package'``: NCHW float32, Score-CAM one image at a
time, inner batch 64), and the fast path in float32 and under bf16 autocast, both channels_last, ``--chunk`` rows
per forward. Score-CAM and Ablation-CAM run on ``--images`` images (one forward per channel of the target layer
each: 2048 for ResNet-50), FullGrad on ``--fullgrad-images``; ``--package-images N`` runs the package on the
first N of them only, where it is the slow one (speedups are ratios of maps/s, the maps compared on those N), so
that a card times the fast FullGrad on 64 images without minutes of the package. Methods run interleaved
``--repeats`` times (best kept). Maps are compared: fast float32 against the package (the equality tests' bound
is 1e-4) and bf16 against float32 (Score-CAM's budget is tested in tests/explain/test_fast_paths.py). Targets on
the CPU: Score-CAM and Ablation-CAM fp32 >= 1.5x, bf16 >= 3x the package; GPU: >= 10x. Writes a JSON report
atomically.
"""
from __future__ import annotations

import argparse
import copy
import os

import torch

from bench.common import (
    bench_parser,
    machine,
    parse_bench_args,
    random_model_and_batch,
    summary,
    time_interleaved,
    write_results,
)
from utils.explain import create_saliency
from utils.runtime.forward import ForwardSettings

METHODS = ("scorecam", "ablationcam", "fullgrad")
TARGETS = {"cpu": {"fp32": 1.5, "bf16": 3.0}, "cuda": {"fp32": 10.0, "bf16": 10.0}}


def bench_method(name: str, model: torch.nn.Module, model_cl: torch.nn.Module, images: torch.Tensor,
                 targets: torch.Tensor, package_images: int, args: argparse.Namespace, device: torch.device) -> dict:
    """The package on the first ``package_images`` images, the fast paths on all; speedups are ratios of maps/s."""
    engines = {
        "package": create_saliency(name, model, engine="package"),
        "fast_fp32": create_saliency(name, model_cl, forward=ForwardSettings(chunk=args.chunk, channels_last=True)),
        "fast_bf16": create_saliency(name, model_cl, forward=ForwardSettings(chunk=args.chunk, channels_last=True,
                                                                             amp="bf16")),
    }
    counts = {engine: package_images if engine == "package" else len(images) for engine in engines}
    maps: dict[str, torch.Tensor] = {}

    def run(engine: str):
        return lambda: maps.__setitem__(engine, engines[engine](images[:counts[engine]], targets[:counts[engine]]))

    # no warm-up round for the package's per-channel methods: one call takes minutes on a CPU
    slow = name != "fullgrad" and device.type == "cpu"
    times = time_interleaved({engine: run(engine) for engine in engines}, args.repeats, device, warm_up=not slow)
    result = {engine: {**summary(samples, counts[engine]), "images": counts[engine]}
              for engine, samples in times.items()}
    rate = {engine: counts[engine] / result[engine]["best_s"] for engine in engines}
    result["speedup_vs_package"] = {engine: round(rate[engine] / rate["package"], 2)
                                    for engine in ("fast_fp32", "fast_bf16")}
    result["max_abs_diff_fp32_vs_package"] = float(
        (maps["fast_fp32"][:package_images] - maps["package"]).abs().max())
    result["max_abs_diff_bf16_vs_fp32"] = float((maps["fast_bf16"] - maps["fast_fp32"]).abs().max())
    result["mean_abs_diff_bf16_vs_fp32"] = float((maps["fast_bf16"] - maps["fast_fp32"]).abs().mean())
    result["images"] = len(images)
    return result


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags: the common ones of ``bench_parser`` and its own."""
    parser = bench_parser(__doc__, "perchannel.json", batch=None, repeats=1)
    parser.add_argument("--pool", default="ca", choices=["gap", "ca"])
    parser.add_argument("--images", type=int, default=1, help="images for Score-CAM and Ablation-CAM")
    parser.add_argument("--fullgrad-images", type=int, default=8)
    parser.add_argument("--package-images", type=int, default=None,
                        help="time the package on the first N images only (default: all), where it is the slow one")
    parser.add_argument("--chunk", type=int, default=64, help="rows (image, channel) per forward of the fast path")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    return parser


def main(argv: list[str] | None = None) -> dict:
    args, device = parse_bench_args(build_parser(), argv)
    model, images, targets = random_model_and_batch(args.model, args.pool, max(args.images, args.fullgrad_images),
                                                    args.imsize, device)
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    report: dict = {"setup": {"model": args.model, "pool": args.pool, "imsize": args.imsize, "chunk": args.chunk,
                              "repeats": args.repeats, **machine(device), "weights": "random init"},
                    "targets": TARGETS[device.type]}
    for name in args.methods:
        count = args.fullgrad_images if name == "fullgrad" else args.images
        package_images = min(count, args.package_images or count)
        result = bench_method(name, model, model_cl, images[:count], targets[:count], package_images, args, device)
        report[name] = result
        speedups = result["speedup_vs_package"]
        print(f"{name}: package {result['package']['maps_per_s']:.4g} maps/s, fast fp32 "
              f"{result['fast_fp32']['maps_per_s']:.4g} (x{speedups['fast_fp32']}), fast bf16 "
              f"{result['fast_bf16']['maps_per_s']:.4g} (x{speedups['fast_bf16']}); |fp32 - package| "
              f"{result['max_abs_diff_fp32_vs_package']:.1e}, |bf16 - fp32| max "
              f"{result['max_abs_diff_bf16_vs_fp32']:.1e} mean {result['mean_abs_diff_bf16_vs_fp32']:.1e}",
              flush=True)
    write_results(args.out, report)
    print(f"targets ({device.type}): fp32 >= {TARGETS[device.type]['fp32']}x, bf16 >= {TARGETS[device.type]['bf16']}x "
          f"the package; load average {report['load_average_at_end']:.1f} on {os.cpu_count()} cores; wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
