"""What every benchmark shares: its common flags, the machine it ran on, interleaved timing, and the write of its
results (atomic JSON, then the docs/performance.md block that quotes the file)."""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench.readme import RESULTS, refresh_for
from models import create_model
from utils.runtime.io import save_json


def bench_parser(doc: str, out: str | None, *, batch: int | None = 8, batch_help: str | None = None,
                 repeats: int = 3, repeats_help: str | None = None) -> argparse.ArgumentParser:
    """A parser with the flags every benchmark takes: ``--model --imsize [--batch] --repeats --device --threads
    --out`` (``out``: the file name under bench/results/; None leaves the default to the benchmark)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--model", default="resnet50", help="timm architecture (random init)")
    parser.add_argument("--imsize", type=int, default=224)
    if batch is not None:
        parser.add_argument("--batch", type=int, default=batch, help=batch_help)
    parser.add_argument("--repeats", type=int, default=repeats, help=repeats_help)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS / out if out else None)
    return parser


def parse_bench_args(parser: argparse.ArgumentParser,
                     argv: list[str] | None = None) -> tuple[argparse.Namespace, torch.device]:
    """Parse, apply ``--threads`` and return the arguments with the device."""
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args, torch.device(args.device)


def machine(device: torch.device) -> dict:
    """Where the figures come from: device, card, versions, threads and cores."""
    return {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count()}


def random_model_and_batch(model_name: str, pool: str, images: int, imsize: int, device: torch.device,
                           logit_scale: float = 1.0) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A CA-Stream model with random weights (seed 0) in eval mode, ``images`` random images and the model's predicted
    classes for them; ``logit_scale`` multiplies the classifier so that scores are confident, as a trained model's."""
    torch.manual_seed(0)
    model = create_model(model_name, pool=pool, num_classes=1000).to(device).eval()
    with torch.no_grad():
        for parameter in model.backbone.get_classifier().parameters():
            parameter.mul_(logit_scale)
    batch = torch.randn(images, 3, imsize, imsize, device=device)
    with torch.no_grad():
        targets = model(batch).argmax(1)
    return model, batch, targets


def write_results(path: Path, report: dict) -> None:
    """Stamp the load average, write the report atomically and refresh the docs/performance.md block that quotes it."""
    report["load_average_at_end"] = os.getloadavg()[0]
    save_json(path, report)
    refresh_for(Path(path))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def process_cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def time_interleaved(runs: dict[str, Callable[[], object]], repeats: int, device: torch.device,
                     warm_up: bool = True) -> dict[str, list[tuple[float, float]]]:
    """Every callable once as warm-up, then ``repeats`` rounds in which each runs once (interleaved).
    Records (wall, process CPU) seconds: on a shared CPU the wall time depends on the neighbours' load, the
    CPU time much less (with one thread it is the work done; with more it also counts spin-waiting)."""
    for run in runs.values() if warm_up else ():
        run()
    times: dict[str, list] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            _sync(device)
            start, cpu = time.perf_counter(), process_cpu_seconds()
            run()
            _sync(device)
            times[name].append((time.perf_counter() - start, process_cpu_seconds() - cpu))
    return times


def summary(samples: list[tuple[float, float]], batch: int) -> dict:
    """Best and median wall time, best CPU time and maps per second of ``batch`` maps per call."""
    wall = [w for w, _ in samples]
    cpu = [c for _, c in samples]
    return {"best_s": round(min(wall), 4), "median_s": round(statistics.median(wall), 4),
            "best_cpu_s": round(min(cpu), 4), "maps_per_s": float(f"{batch / min(wall):.4g}"), "runs": len(samples)}
