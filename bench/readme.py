"""The benchmark tables of docs/performance.md, rendered from the JSON files the benchmarks write, so no figure is
typed.

    python -m bench.readme                     # refresh every block from bench/results/ and bench/results/gpu/

Each block of docs/performance.md between ``<!-- bench:<name> -->`` and ``<!-- /bench:<name> -->`` shows one
benchmark: a row per result file that exists (the CPU file under bench/results/, the GPU file under
bench/results/gpu/ written by bench/gpu_checks.sh). A benchmark that writes one of the files a block quotes
refreshes that block itself (``refresh_for``); a run writing elsewhere (a test, a trial) leaves the page alone.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from utils.runtime.io import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
PAGE = REPO / "docs" / "performance.md"


def _machine(report: dict) -> str:
    setup = report.get("setup", report)
    on_gpu = str(setup.get("device")).startswith("cuda")
    where = f"{setup['model']} {setup['imsize']} px, " + (
        setup.get("gpu") or ("GPU" if on_gpu else f"CPU, {setup.get('threads')} threads"))
    load = report.get("load_average_at_end", (report.get("load_average") or [None])[0])
    return where + (f", load {load:.1f} on {setup.get('cpu_count')} cores"
                    if load is not None and not on_gpu else "")


def training(reports: list[dict]) -> list[str]:
    lines = ["| machine, batch | full fine-tuning step (`gap`) | `--freeze` / full (target <= 0.5) "
             "| `ca` / `gap` (<= 1.05) | `--channels_last` | `--amp bf16` | both |", "|---|---|---|---|---|---|---|"]
    for report in reports:
        ratios = {label.split(" ")[0]: value for label, value in report["ratios"].items()}
        lines.append(f"| {_machine(report)}, {report['batch']} | {report['median_step_seconds']['gap_full']:.3f} s "
                     f"| **{ratios['freeze_over_full']:.2f}** | **{ratios['ca_over_gap']:.2f}** "
                     f"| {_ratio(ratios['channels_last_speedup'])} faster | {_ratio(ratios['bf16_speedup'])} faster "
                     f"| {_ratio(ratios['channels_last_bf16_speedup'])} faster |")
    return lines


def saliency(reports: list[dict]) -> list[str]:
    lines = ["| model, machine, batch | forward | fast Grad-CAM (x forward, target <= 1.2) "
             "| `pytorch_grad_cam.GradCAM` (x fast, target >= 2.5) | attention maps (x forward, <= 1.1) |",
             "|---|---|---|---|---|"]
    for report in reports:
        for pool in ("gap", "ca"):
            r = report[pool]
            attention = (f"{r['attention']['best_s']:.4g} s ({_ratio(r['ratios']['attention_vs_forward'])})"
                         if "attention" in r else "-")
            lines.append(f"| `{pool}`, {_machine(report)}, {report['setup']['batch']} | {r['forward']['best_s']:.4g} s "
                         f"| {r['fast_gradcam']['best_s']:.4g} s ({_ratio(r['ratios']['fast_vs_forward'])}) "
                         f"| {r['package_gradcam']['best_s']:.4g} s ({_ratio(r['ratios']['package_vs_fast'])} slower) "
                         f"| {attention} |")
    return lines


def _maps_per_s(result: dict) -> str:
    return _rate(result["maps_per_s"]) + (" (one image)" if result["images"] == 1 else "")


def all_methods(reports: list[dict]) -> list[str]:
    """A row per method, a column per run of ``--all-methods``: ours / the package's where both engines exist."""
    reports = [report for report in reports if "all_methods" in report]
    if not reports:
        return []
    names = list(dict.fromkeys(key.removesuffix(" (package)") for r in reports for key in r["all_methods"]))
    lines = ["| method | " + " | ".join(f"{_machine(r)}, batch {r['setup']['batch']}, maps/s" for r in reports) + " |",
             "|---|" + "---|" * len(reports)]
    for name in names:
        cells = []
        for report in reports:
            timed = report["all_methods"]
            rates = [_maps_per_s(timed.get(key)) for key in (name, f"{name} (package)") if key in timed]
            cells.append(" / ".join(rates) or "-")
        both = any(f"{name} (package)" in r["all_methods"] for r in reports)
        lines.append(f"| `{name}`{': ours / package' if both else ''} | " + " | ".join(cells) + " |")
    return lines


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _ratio(value: float) -> str:
    return f"**{value:.2f}x**"


def perchannel(reports: list[dict]) -> list[str]:
    lines = ["| method, machine | images | package, maps/s | fast fp32, maps/s | fast bf16, maps/s "
             "| target fp32 / bf16 | max abs diff fp32 vs package | bf16 vs fp32, max / mean |",
             "|---|---|---|---|---|---|---|---|"]
    for report in reports:
        targets = report["targets"]
        for method in ("scorecam", "ablationcam", "fullgrad"):
            if method not in report:
                continue
            r = report[method]
            speedups = r["speedup_vs_package"]
            # from the best time, at full precision: the file's rounded maps_per_s can read 0 for the package
            # files written before --package-images record the image count once, for every engine
            rate = {engine: _rate(r[engine].get("images", r["images"]) / r[engine]["best_s"])
                    for engine in ("package", "fast_fp32", "fast_bf16")}
            package_images = r["package"].get("images", r["images"])
            images = r["images"] if package_images == r["images"] else f"{r['images']} (package {package_images})"
            lines.append(
                f"| `{method}`, {_machine(report)} | {images} | {rate['package']} "
                f"| {rate['fast_fp32']} ({_ratio(speedups['fast_fp32'])}) "
                f"| {rate['fast_bf16']} ({_ratio(speedups['fast_bf16'])}) "
                f"| >= {targets['fp32']}x / {targets['bf16']}x | {r['max_abs_diff_fp32_vs_package']:.1e} "
                f"| {r['max_abs_diff_bf16_vs_fp32']:.1e} / {r['mean_abs_diff_bf16_vs_fp32']:.1e} |")
    return lines


def _ours_curves(methods: dict, label: str) -> str:
    r = methods.get(f"ours_{label}")
    if r is None:
        return "not run"
    bare = f", {r['ours_over_bare']:.2f}" if "ours_over_bare" in r else ""
    return f"{_rate(r['image_steps_per_s'])} ({_ratio(r['speedup_vs_baseline'])}{bare})"


def metrics(reports: list[dict]) -> list[str]:
    lines = ["| machine, protocol | image-steps | reference loop, image-steps/s | ours fp32 (vs loop, ours/bare) "
             "| ours bf16 (vs loop, ours/bare) | max abs diff fp32 vs loop / bf16 vs fp32 |",
             "|---|---|---|---|---|---|"]
    for report in reports:
        methods = report["methods"]
        bf16 = report.get("max_abs_diff_bf16_vs_fp32")
        lines.append(
            f"| {_machine(report)}, {report['protocol']['name']} | {report['images']} x "
            f"{report['image_steps'] // report['images']} | {_rate(methods['baseline']['image_steps_per_s'])} "
            f"| {_ours_curves(methods, 'fp32')} | {_ours_curves(methods, 'bf16')} "
            f"| {report['max_abs_diff_fp32_vs_baseline']:.1e} / "
            + (f"{bf16:.1e} |" if bf16 is not None else "- |"))
    return lines


def compile_(reports: list[dict]) -> list[str]:
    lines = ["| workload, machine | eager | compiled | speedup | compiling | pays after |", "|---|---|---|---|---|---|"]
    for report in reports:
        for name, r in report["results"].items():
            lines.append(f"| {name} ({report['setup']['amp']}), {_machine(report)} | {r['eager_s']:.3f} s "
                         f"| {r['compiled_s']:.3f} s | {_ratio(r['speedup'])} | {r['compile_s']:.0f} s | "
                         + (f"{r['break_even_steps']} steps |" if r["break_even_steps"] else "never |"))
    return lines


def _per_call(results: dict, name: str) -> str:
    if name not in results:
        return "not run"
    return f"{results[name]['seconds'] * 1000:.1f} ms ({_ratio(results[name]['ratio_to_forward'])})"


def profile_gradient(reports: list[dict]) -> list[str]:
    lines = ["| model, machine | forward | fast Grad-CAM (x forward) | compiled head (x forward) "
             "| operator calls: forward / fast / compiled |", "|---|---|---|---|---|"]
    for report in reports:
        for pool in ("gap", "ca"):
            r = report[pool]
            calls = " / ".join(f"{r[name]['operator_calls_per_call']:.0f}" for name in
                               ("forward", "fast_gradcam", "fast_gradcam_compiled_head") if name in r)
            lines.append(f"| `{pool}`, {_machine(report)} | {r['forward']['seconds'] * 1000:.1f} ms "
                         f"| {_per_call(r, 'fast_gradcam')} | {_per_call(r, 'fast_gradcam_compiled_head')} "
                         f"| {calls} |")
    return lines


def _duration(hours: float) -> str:
    return f"{hours:.2f} h" if hours < 48 else f"{hours / 24:.1f} days"


def paper_table(reports: list[dict]) -> list[str]:
    lines = ["| machine | model | method | ours: maps + metrics | package + reference loop | ratio |",
             "|---|---|---|---|---|---|"]
    for report in reports:
        machine = f"{_machine(report)}, {report['setup']['amp']}, chunk {report['setup']['chunk']}"
        for row in report["rows"]:
            lines.append(f"| {machine} | {row['model'].upper()} | {row['method']} | "
                         f"{_duration(row['ours_maps_hours'])} + {_duration(row['ours_metrics_hours'])} "
                         f"| {_duration(row['package_hours'])} | {row['package_hours'] / row['ours_hours']:.1f}x |")
        totals = report["total_hours"]
        lines.append(f"| {machine} | **whole table** | | **{_duration(totals['ours'])}** "
                     f"| **{_duration(totals['package'])}** | **{report['speedup']:.1f}x** |")
    return lines


@dataclass(frozen=True)
class Block:
    files: tuple[str, ...]  # the result files it quotes, relative to bench/results/
    render: Callable[[list[dict]], list[str]]
    command: str  # what writes its first file


BLOCKS: dict[str, Block] = {
    "training": Block(("training.json", "gpu/training_gpu.json"), training, "python -m bench.bench_training"),
    "saliency": Block(("saliency.json", "gpu/saliency_gpu.json"), saliency, "python -m bench.bench_saliency"),
    "all_methods": Block(("saliency.json", "gpu/saliency_gpu.json", "gpu/saliency_gpu_all.json"), all_methods,
                         "python -m bench.bench_saliency --all-methods"),
    "perchannel": Block(("perchannel.json", "gpu/perchannel_gpu.json"), perchannel, "python -m bench.bench_perchannel"),
    "metrics": Block(("metrics.json", "metrics_rise.json", "gpu/metrics_gpu.json", "gpu/metrics_gpu_rise.json"),
                     metrics, "python -m bench.bench_metrics"),
    "compile": Block(("compile.json", "gpu/compile_gpu.json"), compile_, "python -m bench.bench_compile"),
    "profile_gradient": Block(("profile_gradient_cpu.json", "gpu/profile_gradient_cuda.json"), profile_gradient,
                              "python -m bench.profile_gradient"),
    "paper_table": Block(("paper_table.json", "gpu/paper_table_gpu.json"), paper_table, "python -m bench.paper_table"),
}


def render(name: str, results: Path) -> str:
    """The block's table from the files that exist; a line saying how to fill it when none does."""
    block = BLOCKS[name]
    found = [results / file for file in block.files if (results / file).is_file()]
    if not found:
        return f"Not measured yet: `{block.command}` writes `bench/results/{block.files[0]}`.\n"
    lines = block.render([json.loads(file.read_text()) for file in found])
    if not lines:
        return f"Not measured yet: `{block.command}` writes `bench/results/{block.files[0]}`.\n"
    sources = ", ".join(f"`{file.relative_to(results).as_posix()}`" for file in found)
    return "\n".join(lines) + f"\n\nFrom {sources}.\n"


def refresh(names: list[str] | None = None, readme: Path | None = None, results: Path | None = None) -> list[str]:
    """Rewrites the blocks ``names`` (default: all) of ``readme`` (default: the repository's) from the files under
    ``results`` (default: bench/results/); returns the names it found there."""
    readme, results = readme or PAGE, results or RESULTS
    text = readme.read_text()
    refreshed = []
    for name in names or list(BLOCKS):
        begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
        if begin not in text or end not in text:
            continue
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{begin}\n{render(name, results)}{end}{tail}"
        refreshed.append(name)
    atomic_write_text(readme, text)
    return refreshed


def refresh_for(written: Path) -> None:
    """Refreshes the page's block that quotes ``written`` (a benchmark's output), if any."""
    written = written.resolve()
    for name, block in BLOCKS.items():
        if any((RESULTS / file).resolve() == written for file in block.files):
            refresh([name])
            print(f"{PAGE.name}: benchmark block '{name}' refreshed from {written.name}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"blocks to refresh, of {', '.join(BLOCKS)} (default: all)")
    parser.add_argument("--readme", type=Path, default=None, help="default: docs/performance.md")
    parser.add_argument("--results", type=Path, default=None, help="default: bench/results/")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(BLOCKS))
    if unknown:
        parser.error(f"unknown block {', '.join(unknown)}: expected one of {', '.join(BLOCKS)}")
    print(f"refreshed: {', '.join(refresh(args.names, args.readme, args.results)) or 'no block found'}")


if __name__ == "__main__":
    main()
