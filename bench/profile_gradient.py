"""Where the fast gradient CAMs spend their time beyond a forward: a torch.profiler trace summary of a plain forward,
the fast Grad-CAM path (eager) and the same with its head compiled (``ForwardSettings(compile=True)``), on
random-init ResNet-50 ``gap`` and ``ca`` models.

    python -m bench.profile_gradient                                  # CPU: bench/results/profile_gradient_cpu.*
    python -m bench.profile_gradient --device cuda --batch 64         # GPU: bench/results/gpu/profile_gradient_cuda.*

For each (pool, what) the summary records the wall time per call (best of ``--repeats`` interleaved rounds after
warm-up calls, the compiled head's compilation included in the warm-up), the ratio to the forward, the number of
operator calls and,
on a GPU, of kernel launches and the device time per call; the text file holds the profiler's table of the top
operators by self time (device time on a GPU). Writes both atomically.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from bench.common import (
    bench_parser,
    machine,
    parse_bench_args,
    random_model_and_batch,
    time_interleaved,
    write_results,
)
from bench.readme import RESULTS
from utils.explain import create_saliency
from utils.runtime.forward import ForwardSettings
from utils.runtime.io import atomic_write_text


def trace(run: Callable[[], object], calls: int, device: torch.device) -> tuple[dict, str]:
    """Operator and kernel counts per call, and the profiler's table, over ``calls`` calls."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(calls):
            run()
        if device.type == "cuda":
            torch.cuda.synchronize()
    events = prof.key_averages()
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = events.table(sort_by=sort_by, row_limit=25)
    counts = {"operator_calls_per_call": sum(e.count for e in events if e.key.startswith("aten::")) / calls}
    if device.type == "cuda":
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        counts["kernel_launches_per_call"] = len(kernels) / calls
        counts["device_ms_per_call"] = sum(e.time_range.elapsed_us() for e in kernels) / 1000 / calls
    return counts, table


def profile_pool(pool: str, args: argparse.Namespace, device: torch.device, report: dict, tables: list[str]) -> dict:
    """Timings and trace counts of the forward and the fast Grad-CAM (eager, compiled head) of one model."""
    model, x, targets = random_model_and_batch(args.model, pool, args.batch, args.imsize, device)
    eager = create_saliency("gradcam", model)
    runs: dict[str, Callable[[], object]] = {"forward": lambda: model(x), "fast_gradcam": lambda: eager(x, targets)}
    if not args.no_compile:
        compiled = create_saliency("gradcam", model, forward=ForwardSettings(compile=True))
        runs["fast_gradcam_compiled_head"] = lambda: compiled(x, targets)
        report.setdefault("max_abs_diff_compiled_vs_eager", {})[pool] = float(
            (compiled(x, targets) - eager(x, targets)).abs().max())
    results = {}
    with torch.no_grad():
        for run in runs.values():
            for _ in range(2):
                run()  # warm-up (the compiled head compiles here)
        # interleaved, so that a drifting load on a shared machine hits every run alike
        times = time_interleaved(runs, args.repeats, device, warm_up=False)
        for name, run in runs.items():
            results[name] = {"seconds": min(wall for wall, _ in times[name])}
            counts, table = trace(run, args.calls, device)
            results[name].update(counts)
            tables.append(f"### {pool} / {name}: {results[name]['seconds'] * 1000:.2f} ms per call\n{table}\n")
    for name, result in results.items():
        result["ratio_to_forward"] = round(result["seconds"] / results["forward"]["seconds"], 3)
        print(f"[{pool}] {name:28s} {result['seconds'] * 1000:8.2f} ms  x{result['ratio_to_forward']:.2f} of a "
              f"forward, {result['operator_calls_per_call']:.0f} operator calls"
              + (f", {result['kernel_launches_per_call']:.0f} kernels ({result['device_ms_per_call']:.2f} ms "
                 f"on the device)" if "kernel_launches_per_call" in result else ""), flush=True)
    return results


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags: the common ones of ``bench_parser`` and its own."""
    parser = bench_parser(__doc__, None, repeats=5)
    parser.add_argument("--calls", type=int, default=3, help="calls traced by the profiler")
    parser.add_argument("--no-compile", action="store_true", help="leave out the compiled head")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args, device = parse_bench_args(build_parser(), argv)
    out = args.out or RESULTS / ("gpu" if device.type == "cuda" else "") / (
        f"profile_gradient_{device.type}")
    report: dict = {"setup": {"model": args.model, "imsize": args.imsize, "batch": args.batch, **machine(device)}}
    tables: list[str] = []
    for pool in ("gap", "ca"):
        report[pool] = profile_pool(pool, args, device, report, tables)
    write_results(out.with_suffix(".json"), report)
    atomic_write_text(out.with_suffix(".txt"), "\n".join(tables))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.txt')}")
    return report


if __name__ == "__main__":
    main()
