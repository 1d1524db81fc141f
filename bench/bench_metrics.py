"""Insertion/deletion throughput: a reference-style loop against utils.faithfulness.causal_metric (fp32 channels_last,
bf16 autocast), measured in the same run on a random-init timm model (nothing is downloaded).

    python -m bench.bench_metrics --model resnet50 --imsize 224 --images 4 --protocol reference

Baseline = what the reference's CausalMetric.evaluate does: for each step, copy the next pixels into the
running image batch, one fp32 NCHW forward of all images under no_grad, softmax, scores moved to the CPU.
Physical limit = a bare forward of the same model at the same precision, layout and chunk on as many images as
the curves have image-steps (inputs prepared once, nothing else): ``ours / bare`` (bare time over ours, target
>= 0.9) says how much of the workload is the model itself.
Methods run interleaved, ``--repeats`` times, best time kept (the machine is shared and timings are noisy).
Writes a JSON report atomically (temporary file + rename).
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Callable

import torch

from bench.common import bench_parser, machine, parse_bench_args, write_results
from utils.faithfulness import blur, causal_metric, get_protocol, pixel_rank, prepare_saliency
from utils.runtime.forward import ForwardSettings


class PeakMemory:
    """Peak memory above the level at entry: CUDA allocator stats on GPU, RSS sampled every 2 ms on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak_mb = device, 0.0
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:  # not Linux: the process high-water mark is the best available
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._peak = max(self._peak, self._rss())

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated()
        else:
            self._start = self._peak = self._rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mb = (torch.cuda.max_memory_allocated() - self._start) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak_mb = (max(self._peak, self._rss()) - self._start) / 2**20


def baseline_curves(model: torch.nn.Module, images: torch.Tensor, saliency: torch.Tensor, targets: torch.Tensor,
                    mode: str, pps: int, kernel: int, sigma: float) -> torch.Tensor:
    """Reference-style loop (engine/evaluation.py): per step one fp32 NCHW forward, scores gathered on the CPU.
    Same pixel order as ours (stable sort), so curves must agree to rounding."""
    n, c, h, w = images.shape
    order = pixel_rank(prepare_saliency(saliency, (h, w), n, images.device), True).argsort(1)
    steps = math.ceil(h * w / pps)
    if mode == "deletion":
        start, finish = images.clone(), torch.zeros_like(images)
    else:
        start, finish = blur(images, kernel, sigma), images.clone()
    start, finish = start.flatten(2), finish.flatten(2)
    rows = torch.arange(n, device=images.device)[:, None]
    scores = torch.zeros(steps + 1, n)
    with torch.no_grad():
        for i in range(steps + 1):
            probs = model(start.view(n, c, h, w)).softmax(-1).cpu()
            scores[i] = probs[torch.arange(n), targets.cpu()]
            coords = order[:, pps * i:pps * (i + 1)]
            start[rows, :, coords] = finish[rows, :, coords]
    return scores.T


def bare_forwards(model: torch.nn.Module, image_steps: int, imsize: int, forward: ForwardSettings,
                  device: torch.device) -> Callable[[], torch.Tensor]:
    """The physical limit of the workload: ``image_steps`` images through ``model`` in chunks of ``forward.chunk``
    at its precision and layout, the inputs ready on the device beforehand."""
    inputs = forward.prepare(torch.randn(min(forward.chunk, image_steps), 3, imsize, imsize, device=device), device)

    def run() -> torch.Tensor:
        with torch.inference_mode(), forward.autocast(device):
            return torch.cat([model(inputs[:min(forward.chunk, image_steps - start)]).float()
                              for start in range(0, image_steps, forward.chunk)])
    return run


def timed(fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[torch.Tensor, float, float, float]:
    """Output, wall seconds, process CPU seconds (less sensitive to other jobs on a shared CPU), peak MiB."""
    with PeakMemory(device) as mem:
        begin, begin_cpu = time.perf_counter(), time.process_time()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds, cpu_seconds = time.perf_counter() - begin, time.process_time() - begin_cpu
    return out, seconds, cpu_seconds, mem.peak_mb


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags: the common ones of ``bench_parser`` and its own."""
    parser = bench_parser(__doc__, "metrics.json", batch=16, batch_help="max images x steps per forward (ours)",
                          repeats=2, repeats_help="interleaved repeats after a warm-up round; best kept")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--protocol", default="reference", choices=["reference", "rise"])
    parser.add_argument("--pixels-per-step", type=int, default=None, help="override the protocol's step")
    parser.add_argument("--mode", default="deletion", choices=["deletion", "insertion"])
    parser.add_argument("--amp", default="bf16", choices=["bf16", "fp16", "none"])
    parser.add_argument("--logit-scale", type=float, default=100.0,
                        help="scale the random classifier so the softmax is not uniform (p ~ 1e-3 makes every "
                             "curve difference look negligible)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> dict:
    args, device = parse_bench_args(build_parser(), argv)

    import timm

    torch.manual_seed(args.seed)
    model = timm.create_model(args.model, pretrained=False).eval().to(device)
    with torch.no_grad():
        for p in model.get_classifier().parameters():
            p.mul_(args.logit_scale)
    # ours runs the same weights converted to channels_last; the baseline keeps the plain NCHW model
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    images = torch.randn(args.images, 3, args.imsize, args.imsize, device=device)
    saliency = torch.rand(args.images, 7, 7, device=device)
    with torch.no_grad():
        targets = model(images).argmax(1)   # predicted class, so curves start from a confident score
    proto = get_protocol(args.protocol)
    pps = args.pixels_per_step or proto.step_pixels(args.imsize, args.imsize)
    image_steps = args.images * (math.ceil(args.imsize ** 2 / pps) + 1)
    def settings(amp: str) -> ForwardSettings:
        return ForwardSettings(amp=amp, channels_last=True, chunk=args.batch)

    def ours(amp: str) -> Callable[[], torch.Tensor]:
        return lambda: causal_metric(model_cl, images, saliency, targets, args.mode, pps, forward=settings(amp),
                                     protocol=proto)

    precisions = {"fp32": "none", **({args.amp: args.amp} if args.amp != "none" else {})}
    methods = {"baseline": lambda: baseline_curves(model, images, saliency, targets, args.mode, pps,
                                                   proto.blur_kernel, proto.blur_sigma)}
    for label, amp in precisions.items():
        methods[f"ours_{label}"] = ours(amp)
        methods[f"bare_{label}"] = bare_forwards(model_cl, image_steps, args.imsize, settings(amp), device)

    results: dict[str, dict] = {}
    curves: dict[str, torch.Tensor] = {}
    # round 0 is a warm-up: one-off kernel / primitive creation must not be billed to whichever method runs first
    for round_ in range(args.repeats + 1):
        for name, fn in methods.items():
            curve, seconds, cpu_seconds, peak = timed(fn, device)
            if round_ == 0:
                continue
            best = results.setdefault(name, {"seconds": math.inf, "cpu_seconds": math.inf, "peak_memory_mb": 0.0})
            best["seconds"] = min(best["seconds"], seconds)
            best["cpu_seconds"] = min(best["cpu_seconds"], cpu_seconds)
            best["peak_memory_mb"] = max(best["peak_memory_mb"], peak)
            curves[name] = curve
    for r in results.values():
        r["image_steps_per_s"] = image_steps / r["seconds"]
        r["speedup_vs_baseline"] = results["baseline"]["seconds"] / r["seconds"]
        r["cpu_time_speedup_vs_baseline"] = results["baseline"]["cpu_seconds"] / r["cpu_seconds"]
    for label in precisions:
        # the share of the physical limit reached: 1 = the curves cost no more than their forwards
        results[f"ours_{label}"]["ours_over_bare"] = results[f"bare_{label}"]["seconds"] / results[f"ours_{label}"][
            "seconds"]

    report = {
        "model": args.model, "imsize": args.imsize, "images": args.images, "batch": args.batch, "mode": args.mode,
        "pixels_per_step": pps, "image_steps": image_steps, "repeats": args.repeats, "logit_scale": args.logit_scale,
        "protocol": proto.to_dict(), **machine(device), "cpu": platform.processor() or platform.machine(),
        "methods": results,
        "max_abs_diff_fp32_vs_baseline": float((curves["ours_fp32"] - curves["baseline"]).abs().max()),
    }
    if args.amp != "none":
        amp_diff = curves[f"ours_{args.amp}"] - curves["ours_fp32"]
        report[f"max_abs_diff_{args.amp}_vs_fp32"] = float(amp_diff.abs().max())
    write_results(args.out, report)

    print(f"{args.model} {args.imsize}px, {args.images} images x {image_steps // args.images} steps "
          f"({pps} px/step), {device}, {torch.get_num_threads()} threads, best of {args.repeats}")
    for name, r in results.items():
        bare = f"  ours/bare {r['ours_over_bare']:.2f} (target >= 0.9)" if "ours_over_bare" in r else ""
        print(f"  {name:10s} {r['image_steps_per_s']:7.2f} image-steps/s  {r['seconds']:7.2f} s  "
              f"x{r['speedup_vs_baseline']:.2f} (CPU time x{r['cpu_time_speedup_vs_baseline']:.2f})  "
              f"peak +{r['peak_memory_mb']:.0f} MiB{bare}")
    for key in (k for k in report if k.startswith("max_abs_diff")):
        print(f"  {key}: {report[key]:.2e}")
    # the benchmark's own threads account for about their number in the load average; more means other jobs
    other_load = os.getloadavg()[0] - torch.get_num_threads()
    if device.type == "cpu" and other_load > 0.5:
        print(f"  warning: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, about {other_load:.1f} "
              f"beyond this run's {torch.get_num_threads()} threads: other jobs share the CPU; multi-threaded timings "
              "suffer most (thread hand-offs wait for the scheduler), try --threads 1")
    print(f"  wrote {args.out}")
    return report


if __name__ == "__main__":
    if sys.platform.startswith("linux") and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        # glibc otherwise raises its mmap threshold after the first large free and keeps freed tensors in the
        # heap, so the RSS of one method would hide the next one's peak; a fixed threshold returns them
        os.execve(sys.executable, [sys.executable, "-m", __spec__.name, *sys.argv[1:]],
                  {**os.environ, "MALLOC_MMAP_THRESHOLD_": "1048576"})
    main()
