"""``--compile`` (torch.compile of the backbone) against eager, measured in the same run on random-init models, for
the three kinds of forward the scripts run: a training step (main_INets.py), recognition's classification forward
(the feature maps the CAMs reuse) and a metric forward (objrecon's chunks).

    python -m bench.bench_compile --model resnet50 --imsize 224 --batch 8
    python -m bench.bench_compile --device cuda --batch 128 --out bench/results/gpu/compile_gpu.json

The compiled model's first call compiles (reported as ``compile_s``, paid once per shape and process); then
eager and compiled run interleaved ``--repeats`` times and the best step is kept. ``speedup`` = eager / compiled
steady-state time; ``break_even_steps`` = how many steps the compilation takes to pay back. Writes JSON
atomically.
"""
from __future__ import annotations

import argparse
import math
import os
import time

import torch

from bench.common import bench_parser, machine, parse_bench_args, time_interleaved, write_results
from models import create_model
from utils.runtime.forward import ForwardSettings


def workloads(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, forward: ForwardSettings,
              device: torch.device) -> dict:
    """name -> one step of that kind for ``model`` (a CA model; training steps the stream, as --freeze does)."""
    optimizer = torch.optim.SGD(model.stream_parameters(), lr=1e-3)

    def train_step() -> None:
        model.train()
        with forward.autocast(device):
            loss = torch.nn.functional.cross_entropy(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.eval()

    def recognition_forward() -> None:
        with torch.no_grad(), forward.autocast(device):
            model.forward_head(model.forward_feature_maps(images))

    return {"training_step": train_step, "recognition_forward": recognition_forward,
            "metric_forward": lambda: forward.logits(model, images)}


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags: the common ones of ``bench_parser`` and its own."""
    parser = bench_parser(__doc__, "compile.json")
    parser.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    return parser


def main(argv: list[str] | None = None) -> dict:
    args, device = parse_bench_args(build_parser(), argv)
    images = torch.randn(args.batch, 3, args.imsize, args.imsize, device=device).contiguous(
        memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (args.batch,), device=device)
    runs, compile_seconds = {}, {}
    for label, compiled in (("eager", False), ("compiled", True)):
        torch.manual_seed(0)
        forward = ForwardSettings(device=device, amp=args.amp, channels_last=True, chunk=args.batch, compile=compiled)
        model = create_model(args.model, pool="ca", num_classes=1000)
        model.freeze_backbone()
        forward.prepare_model(model, device).eval()
        for name, step in workloads(model, images, labels, forward, device).items():
            if compiled:
                start = time.perf_counter()
                step()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                compile_seconds[name] = time.perf_counter() - start
                print(f"  {name}: compiled in {compile_seconds[name]:.1f} s", flush=True)
            runs[f"{name}/{label}"] = step
    times = time_interleaved(runs, args.repeats, device)
    results = {}
    for name in compile_seconds:
        eager = min(wall for wall, _ in times[f"{name}/eager"])
        compiled = min(wall for wall, _ in times[f"{name}/compiled"])
        saved = eager - compiled
        results[name] = {"eager_s": round(eager, 4), "compiled_s": round(compiled, 4),
                         "compile_s": round(compile_seconds[name], 1), "speedup": round(eager / compiled, 3),
                         "break_even_steps": math.ceil(compile_seconds[name] / saved) if saved > 0 else None}
        r = results[name]
        print(f"{name:20s} eager {r['eager_s']:.3f} s, compiled {r['compiled_s']:.3f} s: x{r['speedup']:.2f} "
              f"(compiling took {r['compile_s']:.0f} s: "
              + (f"pays after {r['break_even_steps']} steps)" if r["break_even_steps"] else "never pays)"), flush=True)
    report = {"setup": {"model": args.model, "pool": "ca", "imsize": args.imsize, "batch": args.batch, "amp": args.amp,
                        "channels_last": True, "repeats": args.repeats, **machine(device)},
              "results": results}
    write_results(args.out, report)
    print(f"load average {report['load_average_at_end']:.1f} on {os.cpu_count()} cores; wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
