"""The wall time of the poster's whole table at ImageNet scale, estimated from rates measured on this machine.

    python -m bench.paper_table                                       # CPU: bench/results/paper_table.json
    python -m bench.paper_table --device cuda --batch 64 --chunk 1024 --out bench/results/gpu/paper_table_gpu.json

The table: a GAP and a CA ResNet-50 (random init, 224 px) x {Grad-CAM, Grad-CAM++, Score-CAM, attention (CA
only)} x 50,000 validation images: the classification forward, the maps, AD/AI/AG and insertion + deletion (the
reference protocol: 8 image rows per step, 29 forwards per curve at 224 px). Seven (model, method) rows.

Ours: this project's fast paths (the gradient CAMs reuse the classification forward, Score-CAM's masked forwards
batched) and metrics (``evaluate_batch``), under ``--amp`` (default bf16) with channels_last and ``--chunk`` rows
per forward. Package: ``pytorch_grad_cam`` as the adapter runs it (Score-CAM one image at a time) and the
reference-style metric loop (two fp32 NCHW forwards for AD/AI/AG, one per step for each curve,
``bench.bench_metrics.baseline_curves``); the stream's attention has no package equivalent and is ours in both.
Each rate is the best of ``--repeats`` timed calls after a warm-up call (Score-CAM: one timed call on
``--scorecam-images`` images, no warm-up on a CPU, where one call takes minutes).
"""
from __future__ import annotations

import argparse
import copy
import os

import torch

from bench.bench_metrics import baseline_curves
from bench.common import (
    bench_parser,
    machine,
    parse_bench_args,
    random_model_and_batch,
    time_interleaved,
    write_results,
)
from utils.data import denormalize, normalize
from utils.explain import BatchContext, create_saliency
from utils.faithfulness import evaluate_batch, get_protocol, prepare_saliency
from utils.runtime.forward import ForwardSettings

VALIDATION_IMAGES = 50_000
METHODS = ("gradcam", "gradcam++", "scorecam", "attention")
GOAL_HOURS_H200 = 3.0
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def seconds_per_image(run, images: int, repeats: int, device: torch.device, warm_up: bool = True) -> float:
    samples = time_interleaved({"run": run}, repeats, device, warm_up=warm_up)["run"]
    return min(wall for wall, _ in samples) / images


def reference_metrics(model: torch.nn.Module, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor,
                      pixels_per_step: int, kernel: int, sigma: float) -> None:
    """The reference-style loop of one batch: AD/AI/AG from a clean and a masked fp32 NCHW forward, insertion and
    deletion with one forward per step."""
    saliency = prepare_saliency(maps, tuple(images.shape[-2:]), images.shape[0], images.device)
    with torch.no_grad():
        model(images).softmax(-1).cpu()
        model(normalize(denormalize(images, MEAN, STD) * saliency[:, None], MEAN, STD)).softmax(-1).cpu()
    for mode in ("insertion", "deletion"):
        baseline_curves(model, images, maps, targets, mode, pixels_per_step, kernel, sigma)


def measure_pool(pool: str, args: argparse.Namespace, device: torch.device) -> dict:
    """Seconds per image of each part of the table for one model: ours and the package's."""
    model, images, targets = random_model_and_batch(args.model, pool, args.batch, args.imsize, device,
                                                    logit_scale=args.logit_scale)
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    ours = ForwardSettings(amp=args.amp, channels_last=True, chunk=args.chunk)
    protocol = get_protocol("reference")
    pps = protocol.step_pixels(args.imsize, args.imsize)
    fast_scorecam = create_saliency("scorecam", model_cl, forward=ours)
    package_scorecam = create_saliency("scorecam", model, engine="package")
    few = images[:args.scorecam_images]
    per_channel_warm_up = device.type == "cuda"

    def classify_and_explain(names: tuple[str, ...]):
        """Recognition's batch: one classification forward; the gradient CAMs and the attention reuse it."""
        methods = [create_saliency(name, model_cl, forward=ours) for name in names]

        def run() -> None:
            with torch.no_grad(), ours.autocast(device):
                feature_maps = model_cl.forward_feature_maps(ours.prepare(images, device))
                _, attentions = model_cl.forward_head(feature_maps)
            context = BatchContext(range(len(images)), 0, feature_maps, attentions)
            for method in methods:
                method.explain_batch(images, targets, context)
        return run

    def package_maps(name: str):
        method = create_saliency(name, model, engine="package")
        return lambda: method(images, targets)

    def classify() -> None:
        with torch.no_grad():
            model(images)

    maps = torch.rand(args.batch, args.imsize // 32, args.imsize // 32, device=device)
    seconds = {
        "ours": {
            "classify_and_gradient_cams": seconds_per_image(classify_and_explain(("gradcam", "gradcam++")),
                                                            args.batch, args.repeats, device),
            "classify": seconds_per_image(classify_and_explain(()), args.batch, args.repeats, device),
            "scorecam": seconds_per_image(lambda: fast_scorecam(few, targets[:len(few)]), len(few), 1, device,
                                          per_channel_warm_up),
            "metrics": seconds_per_image(
                lambda: evaluate_batch(model_cl, images, maps, targets, MEAN, STD, protocol, ours, perturbation=False),
                args.batch, args.repeats, device),
        },
        "package": {
            "classify": seconds_per_image(classify, args.batch, args.repeats, device),
            "gradcam": seconds_per_image(package_maps("gradcam"), args.batch, args.repeats, device),
            "gradcam++": seconds_per_image(package_maps("gradcam++"), args.batch, args.repeats, device),
            "scorecam": seconds_per_image(lambda: package_scorecam(few, targets[:len(few)]), len(few), 1, device,
                                          per_channel_warm_up),
            "metrics": seconds_per_image(lambda: reference_metrics(model, images, maps, targets, pps,
                                                                   protocol.blur_kernel, protocol.blur_sigma),
                                         args.batch, args.repeats, device),
        },
    }
    if pool == "ca":
        attention = classify_and_explain(("attention",))
        seconds["ours"]["attention"] = seconds_per_image(attention, args.batch, args.repeats, device)
        seconds["package"]["attention"] = seconds["ours"]["attention"]  # no package equivalent: ours in both
    return seconds


def table_rows(pool: str, seconds: dict) -> list[dict]:
    """Hours per (model, method) for 50,000 images: maps (with the classification forward) and metrics."""
    rows = []
    for method in METHODS:
        if method == "attention" and pool != "ca":
            continue
        ours, package = seconds["ours"], seconds["package"]
        if method in ("gradcam", "gradcam++"):
            # recognition writes both gradient maps from one classification forward: half of that batch each
            ours_maps = ours["classify_and_gradient_cams"] / 2
            package_maps = package["classify"] / 2 + package[method]
        elif method == "attention":
            ours_maps = package_maps = ours["attention"]
        else:
            ours_maps = ours["classify"] + ours[method]
            package_maps = package["classify"] + package[method]
        hours = {"ours": {"maps": ours_maps, "metrics": ours["metrics"]},
                 "package": {"maps": package_maps, "metrics": package["metrics"]}}
        row = {"model": pool, "method": method}
        for engine, parts in hours.items():
            for part, per_image in parts.items():
                row[f"{engine}_{part}_hours"] = per_image * VALIDATION_IMAGES / 3600
            row[f"{engine}_hours"] = row[f"{engine}_maps_hours"] + row[f"{engine}_metrics_hours"]
        rows.append(row)
    return rows


def _duration(hours: float) -> str:
    return f"{hours:.2f} h" if hours < 48 else f"{hours / 24:.1f} days"


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags: the common ones of ``bench_parser`` and its own."""
    parser = bench_parser(__doc__, "paper_table.json", batch_help="images per measured batch", repeats=2)
    parser.add_argument("--chunk", type=int, default=64, help="rows per forward of our metrics and Score-CAM")
    parser.add_argument("--scorecam-images", type=int, default=1)
    parser.add_argument("--amp", default="bf16", choices=["none", "bf16", "fp16"])
    parser.add_argument("--logit-scale", type=float, default=100.0)
    return parser


def main(argv: list[str] | None = None) -> dict:
    args, device = parse_bench_args(build_parser(), argv)
    seconds = {}
    rows = []
    for pool in ("gap", "ca"):
        seconds[pool] = measure_pool(pool, args, device)
        rows += table_rows(pool, seconds[pool])
        print(f"[{pool}] seconds per image: " + "; ".join(
            f"{engine}: " + ", ".join(f"{k} {v:.3g}" for k, v in parts.items())
            for engine, parts in seconds[pool].items()), flush=True)
    totals = {engine: sum(row[f"{engine}_hours"] for row in rows) for engine in ("ours", "package")}
    report = {
        "setup": {"model": args.model, "imsize": args.imsize, "batch": args.batch, "chunk": args.chunk,
                  "amp": args.amp, "channels_last": True, "scorecam_images": args.scorecam_images,
                  "repeats": args.repeats, "validation_images": VALIDATION_IMAGES, **machine(device),
                  "weights": "random init"},
        "seconds_per_image": seconds, "rows": rows, "total_hours": totals,
        "speedup": totals["package"] / totals["ours"], "goal_hours_on_one_h200": GOAL_HOURS_H200,
    }
    write_results(args.out, report)
    print(f"{'model':5s} {'method':10s} {'ours':>12s} {'package + reference loop':>26s}")
    for row in rows:
        print(f"{row['model']:5s} {row['method']:10s} {_duration(row['ours_hours']):>12s} "
              f"{_duration(row['package_hours']):>26s}")
    print(f"whole table on this machine ({device.type}): ours {_duration(totals['ours'])}, package + reference loop "
          f"{_duration(totals['package'])} (x{report['speedup']:.1f}); goal on one H200: <= {GOAL_HOURS_H200} h; "
          f"load average {report['load_average_at_end']:.1f} on {os.cpu_count()} cores; wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
