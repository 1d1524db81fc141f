"""Saliency throughput: the fast Grad-CAM path and the stream's attention against a plain forward and against
``pytorch_grad_cam.GradCAM``, all measured in the same run on random-init timm models (nothing downloaded).

    python -m bench.bench_saliency --model resnet50 --imsize 224 --batch 8 [--scorecam]

Timed, for a ``gap`` and a ``ca`` model: a plain forward under no_grad (the baseline), the fast Grad-CAM path
(``create_saliency('gradcam', model)``), the package's GradCAM as users call it (hooks, full backward, CPU
numpy, cv2 upsampling to the input size), for ``ca`` the attention maps, and recognition's batch (classify and
explain with Grad-CAM) with the CAM reusing the classification forward against two separate forwards.
``--scorecam``: the package's ScoreCAM on ONE image (one forward per channel of the target layer), reported per
image. Methods run interleaved ``--repeats`` times and the best time is kept (the machine is shared and timings
are noisy); the median is reported too, and process CPU times (on a shared CPU, ``--threads 1`` and CPU-time
ratios are the steadiest measure). Targets: fast <= 1.2x forward and >= 2.5x faster than the package; attention <= 1.1x
forward. Writes a JSON report atomically (temporary file + rename).
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from functools import partial

import torch
from tqdm import tqdm

from bench.common import (
    bench_parser,
    machine,
    parse_bench_args,
    process_cpu_seconds,
    random_model_and_batch,
    summary,
    time_interleaved,
    write_results,
)
from models import create_model
from utils.explain import BatchContext, available_methods, create_saliency, fast_names

# one forward (or more) per channel of the target layer: 2048 for ResNet-50
PER_CHANNEL_METHODS = ("scorecam", "ablationcam", "sess")
# the package's FullGrad post-processes each image on the host: a batch of 64 takes minutes on a GPU
ONE_IMAGE_IN_THE_PACKAGE = (*PER_CHANNEL_METHODS, "fullgrad")

TARGETS = {"fast_vs_forward_max": 1.2, "package_vs_fast_min": 2.5, "attention_vs_forward_max": 1.1}


def bench_pool(pool: str, args: argparse.Namespace, device: torch.device) -> dict:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, x, targets = random_model_and_batch(args.model, pool, args.batch, args.imsize, device)
    fast = create_saliency("gradcam", model)
    package = GradCAM(model, [model.cam_target_layer])
    package_targets = [ClassifierOutputTarget(int(t)) for t in targets]

    def forward() -> None:
        with torch.no_grad():
            model(x)

    def classify_then_explain() -> None:
        """Recognition before the shared forward: the classification forward, then the CAM's own forward."""
        forward()
        fast(x, targets)

    def classify_and_explain() -> None:
        """Recognition now: the CAM reuses the classification forward's feature maps."""
        with torch.no_grad():
            feature_maps = model.forward_feature_maps(x)
            model.forward_head(feature_maps)
        fast.explain_batch(x, targets, BatchContext(feature_maps=feature_maps))

    runs: dict[str, Callable[[], object]] = {
        "forward": forward,
        "fast_gradcam": lambda: fast(x, targets),
        "package_gradcam": lambda: package(x, package_targets),
        "recognition_separate_forwards": classify_then_explain,
        "recognition_shared_forward": classify_and_explain,
    }
    if pool != "gap":
        attention = create_saliency("attention", model)
        runs["attention"] = lambda: attention(x)
    try:
        times = time_interleaved(runs, args.repeats, device)
        # Same maps? The fast path against the package's pre-upsampling CAM (native resolution).
        native = create_saliency("gradcam", model, engine="package")(x, targets)
        max_diff = float((fast(x, targets) - native).abs().max())
    finally:
        package.__exit__(None, None, None)  # releases the package's hooks
    result = {name: summary(seconds, args.batch) for name, seconds in times.items()}
    for key, clock in (("ratios", "best_s"), ("cpu_ratios", "best_cpu_s")):
        forward_s, fast_s = result["forward"][clock], result["fast_gradcam"][clock]
        shared_s = result["recognition_shared_forward"][clock]
        result[key] = {"fast_vs_forward": round(fast_s / forward_s, 3),
                       "package_vs_fast": round(result["package_gradcam"][clock] / fast_s, 3),
                       "recognition_shared_vs_forward": round(shared_s / forward_s, 3),
                       "recognition_separate_vs_shared": round(
                           result["recognition_separate_forwards"][clock] / shared_s, 3)}
        if "attention" in result:
            result[key]["attention_vs_forward"] = round(result["attention"][clock] / forward_s, 3)
    result["fast_vs_package_max_abs_diff"] = max_diff
    result["fast_path_used"] = bool(fast.uses_fast_path)
    return result


def bench_scorecam(args: argparse.Namespace, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = create_model(args.model, pool="ca", num_classes=1000).to(device).eval()
    x = torch.randn(1, 3, args.imsize, args.imsize, device=device)
    method = create_saliency("scorecam", model, batch_size=args.scorecam_batch)
    start, cpu = time.perf_counter(), process_cpu_seconds()
    method(x, torch.tensor([0]))
    seconds, cpu = time.perf_counter() - start, process_cpu_seconds() - cpu
    with torch.no_grad():
        channels = model.forward_features(x).shape[1]
    return {"images": 1, "channels": channels, "channel_batch": args.scorecam_batch,
            "seconds_per_image": round(seconds, 2), "cpu_seconds_per_image": round(cpu, 2),
            "maps_per_s": round(1 / seconds, 4)}


def bench_all_methods(args: argparse.Namespace, device: torch.device) -> dict:
    """Maps per second of every method create_saliency knows, on the ``ca`` model (those with a fast path through
    both engines): a warm-up call on the same batch, then the best of two timed calls. The package's per-channel
    methods and FullGrad get one image and a single call."""
    model, x, targets = random_model_and_batch(args.model, "ca", args.batch, args.imsize, device)
    results = {}
    for name in tqdm(available_methods(), desc="methods"):
        for engine in ("auto", "package") if name in fast_names() else ("auto",):
            slow = name in (PER_CHANNEL_METHODS if engine == "auto" else ONE_IMAGE_IN_THE_PACKAGE)
            images = 1 if slow else args.batch
            with create_saliency(name, model, engine=engine) as method:
                samples = time_interleaved({name: partial(method, x[:images], targets[:images])},
                                           1 if slow else 2, device, warm_up=not slow)[name]
            seconds, cpu = min(samples)
            key = name if engine == "auto" else f"{name} (package)"
            results[key] = {"images": images, "seconds": round(seconds, 4), "cpu_seconds": round(cpu, 4),
                            "maps_per_s": round(images / seconds, 4)}
            tqdm.write(f"  {key:30s} {images / seconds:10.3f} maps/s ({images} image(s) in {seconds:.2f}s)")
    return results


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags: the common ones of ``bench_parser`` and its own."""
    parser = bench_parser(__doc__, "saliency.json", repeats=5)
    parser.add_argument("--scorecam", action="store_true", help="also time ScoreCAM on one image (slow on CPU)")
    parser.add_argument("--scorecam-batch", type=int, default=128, help="ScoreCAM's inner channel batch")
    parser.add_argument("--all-methods", action="store_true",
                        help="also maps/s of every saliency method (slow methods on one image)")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args, device = parse_bench_args(build_parser(), argv)

    report: dict = {
        "setup": {"model": args.model, "imsize": args.imsize, "batch": args.batch, "repeats": args.repeats,
                  **machine(device), "weights": "random init",
                  "timing": "interleaved; ratios from the best of the repeats (wall: ratios, CPU: cpu_ratios)"},
        "targets": TARGETS,
    }
    for pool in ("gap", "ca"):
        report[pool] = bench_pool(pool, args, device)
        ratios = report[pool]["ratios"]
        timed = [name for name in ("forward", "fast_gradcam", "package_gradcam", "attention") if name in report[pool]]
        line = ", ".join(f"{name} {report[pool][name]['best_s']:.3f}s ({report[pool][name]['maps_per_s']:.1f} maps/s)"
                         for name in timed)
        print(f"[{pool}] {line}")
        print(f"[{pool}] fast/forward {ratios['fast_vs_forward']:.2f}x (target <= {TARGETS['fast_vs_forward_max']}), "
              f"package/fast {ratios['package_vs_fast']:.2f}x (target >= {TARGETS['package_vs_fast_min']})"
              + (f", attention/forward {ratios['attention_vs_forward']:.2f}x "
                 f"(target <= {TARGETS['attention_vs_forward_max']})" if "attention_vs_forward" in ratios else "")
              + f"; fast vs package max |diff| {report[pool]['fast_vs_package_max_abs_diff']:.1e}")
        print(f"[{pool}] recognition batch with Grad-CAM: {ratios['recognition_shared_vs_forward']:.2f}x a forward "
              f"when the CAM reuses the classification forward, "
              f"{ratios['recognition_separate_vs_shared']:.2f}x that with two forwards")
        cpu = report[pool]["cpu_ratios"]
        print(f"[{pool}] by CPU time: " + ", ".join(f"{name} {value:.2f}x" for name, value in cpu.items()))
    report["targets_met"] = {key: all(report[p][key]["fast_vs_forward"] <= TARGETS["fast_vs_forward_max"]
                                      and report[p][key]["package_vs_fast"] >= TARGETS["package_vs_fast_min"]
                                      for p in ("gap", "ca"))
                             and report["ca"][key]["attention_vs_forward"] <= TARGETS["attention_vs_forward_max"]
                             for key in ("ratios", "cpu_ratios")}
    met = report["targets_met"]
    if args.scorecam:
        report["scorecam_per_image"] = bench_scorecam(args, device)
        sc = report["scorecam_per_image"]
        print(f"[ca] ScoreCAM, one image, {sc['channels']} channels in batches of {sc['channel_batch']}: "
              f"{sc['seconds_per_image']:.1f}s per image ({sc['maps_per_s']:.3f} maps/s, "
              f"{sc['cpu_seconds_per_image']:.1f}s CPU)")
    if args.all_methods:
        report["all_methods"] = bench_all_methods(args, device)
    elif args.out.is_file():
        # the maps/s table quotes this file too: a run of the ratios alone keeps the last all-methods figures
        previous = json.loads(args.out.read_text()).get("all_methods")
        if previous is not None:
            report["all_methods"] = previous
    write_results(args.out, report)
    print(f"targets met (wall): {met['ratios']}, (CPU time): {met['cpu_ratios']}; wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
