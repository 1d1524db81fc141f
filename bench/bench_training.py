"""Training-step benchmark: frozen-backbone protocol vs full fine-tuning, CA head vs GAP, channels_last and bf16.

    python -m bench.bench_training --model resnet50 --imsize 224 --batch 8 --repeats 5
    python -m bench.bench_training --device cuda --batch 128 --out bench/results/training_gpu.json

Every configuration is timed in the same run, interleaved round by round (so drifting load on a shared machine
hits all of them alike), and reported as the median step time and as ratios to its baseline. Results go to
bench/results/training.json (written atomically), which the performance table of docs/performance.md quotes.
"""
from __future__ import annotations

import argparse
import statistics

import torch

from bench.common import bench_parser, machine, parse_bench_args, time_interleaved, write_results
from models import create_model
from utils.runtime.forward import ForwardSettings

# name: (pool, frozen backbone, channels_last, amp)
CONFIGS = {
    "gap_full": ("gap", False, False, "none"),
    "ca_full": ("ca", False, False, "none"),
    "ca_freeze": ("ca", True, False, "none"),
    "gap_full_channels_last": ("gap", False, True, "none"),
    "gap_full_bf16": ("gap", False, False, "bf16"),
    "gap_full_channels_last_bf16": ("gap", False, True, "bf16"),
}
# ratio name: (configuration, its baseline)
RATIOS = {
    "freeze_over_full (target <= 0.5)": ("ca_freeze", "ca_full"),
    "ca_over_gap (target <= 1.05)": ("ca_full", "gap_full"),
    "channels_last_speedup": ("gap_full", "gap_full_channels_last"),
    "bf16_speedup": ("gap_full", "gap_full_bf16"),
    "channels_last_bf16_speedup": ("gap_full", "gap_full_channels_last_bf16"),
}


def build_step(name: str, model_name: str, imsize: int, batch: int, classes: int, device: torch.device):
    pool, frozen, channels_last, amp = CONFIGS[name]
    torch.manual_seed(0)
    model = create_model(model_name, pool=pool, num_classes=classes).to(device)
    if frozen:
        model.freeze_backbone()
    model.train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    forward = ForwardSettings(amp=amp)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    images = torch.randn(batch, 3, imsize, imsize, device=device).contiguous(memory_format=memory_format)
    targets = torch.randint(0, classes, (batch,), device=device)

    def step() -> None:
        with forward.autocast(device):
            logits = model(images)
        loss = torch.nn.functional.cross_entropy(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return step


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags: the common ones of ``bench_parser`` and its own."""
    parser = bench_parser(__doc__, "training.json", repeats=5,
                          repeats_help="timed rounds (each runs every configuration once)")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    return parser


def main(argv: list[str] | None = None) -> dict:
    args, device = parse_bench_args(build_parser(), argv)
    steps = {name: build_step(name, args.model, args.imsize, args.batch, args.classes, device)
             for name in args.configs}
    # one warm-up call each (allocator, autocast caches, oneDNN primitives), then interleaved rounds
    times = {name: [wall for wall, _ in samples]
             for name, samples in time_interleaved(steps, args.repeats, device).items()}
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratios = {label: medians[a] / medians[b] for label, (a, b) in RATIOS.items() if a in medians and b in medians}
    for name, seconds in medians.items():
        print(f"{name:30s} {seconds:7.3f} s/step  ({args.batch / seconds:6.1f} img/s)")
    for label, value in ratios.items():
        print(f"{label:40s} {value:6.2f}")
    report = {"model": args.model, "imsize": args.imsize, "batch": args.batch, **machine(device),
              "median_step_seconds": medians, "all_step_seconds": times, "ratios": ratios}
    write_results(args.out, report)
    print(f"results: {args.out}")
    return report


if __name__ == "__main__":
    main()
