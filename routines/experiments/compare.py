"""The paper's comparison (GAP vs CA-Stream) end to end with the project's own CLIs, at CPU scale.

For each seed: (1) train a GAP model; (2) build the CA model from it (--init_from), freeze backbone and
classifier, train the stream; (3) recognition + saliency for both; (4) AD/AI/AG, insertion/deletion (and the
pointing game where masks exist) for both. Then (5) a results table in the poster's shape (rows: method x
pooling; columns: accuracy, AD, AI, AG, insertion, deletion) as mean +- spread over the seeds, a plot of the
mean insertion/deletion curves (GAP vs CA), written to <out>/results.md, results.csv, results.json, curves.png;
and compare.html beside them (every evaluation folder: the table with deltas and seed spread, the images where the
stream gains and loses most; open it in a browser).

    python -m routines.experiments.compare --dataset builtin --seeds 0 1
    python -m routines.experiments.compare --dataset fashion_mnist --seeds 0 1     # installs the Debian data
    python -m routines.experiments.compare --dataset builtin --imsize 224 --block builtin_224   # 7x7 maps
    python -m routines.experiments.compare --dataset voc_builtin --seeds 0 1       # multi-label: mAP, pairs
Rerunning regenerates the table; finished steps (their output files exist) are reused unless --fresh.

On the multi-label set (``voc_builtin``: the built-in shapes in the VOCdevkit layout, ``--dataset voc`` of the
scripts) the first column is mAP, every metric is averaged over image-class pairs (each class present explained),
the pointing game uses the class's boxes with 15 px tolerance, and a second table gives each class's AP.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from utils.evaluation.compare_html import write_compare_page
from utils.evaluation.plots import save_curve_panels
from utils.faithfulness import CURVE_METRICS, MEAN_AP, NUM_PAIRS, metric
from utils.runtime.io import atomic_write_text, save_json, write_csv
from utils.runtime.layout import EvaluationFolder, RunFolder

REPO = Path(__file__).resolve().parents[2]

# The poster's columns (accuracy, then its metrics in its order) and the pointing game where masks exist.
POSTER_METRICS = ("ad", "ai", "ag", "insertion", "deletion")
METRIC_COLUMNS = tuple((metric(key).label, key) for key in (*POSTER_METRICS, "pointing_game"))
# multi-label data: scored by mAP instead of accuracy, read from classification.json under the same key
MULTI_LABEL_DATASETS = ("voc_builtin",)
DATASETS = ("builtin", "fashion_mnist", *MULTI_LABEL_DATASETS)


def columns(dataset: str) -> tuple[tuple[str, str], ...]:
    """(label, key) of the table's columns: the recognition score, then the metrics."""
    score = (MEAN_AP.label, MEAN_AP.key) if dataset in MULTI_LABEL_DATASETS else ("Acc", "accuracy")
    return (score, *METRIC_COLUMNS)
# The poster's ResNet-50 rows on ImageNet (reference only: other data, other scale): accuracy, then POSTER_METRICS.
POSTER = {("gradcam", "gap"): (74.55, 13.04, 44.47, 17.56, 72.57, 13.24),
          ("gradcam", "ca"): (74.70, 12.54, 48.56, 22.67, 75.53, 13.50),
          ("gradcam++", "gap"): (74.55, 13.79, 42.08, 15.87, 72.32, 13.33),
          ("gradcam++", "ca"): (74.70, 13.99, 44.60, 19.29, 75.21, 13.78),
          ("scorecam", "gap"): (74.55, 8.83, 48.46, 17.97, 71.99, 14.31),
          ("scorecam", "ca"): (74.70, 7.09, 54.20, 23.65, 74.91, 14.68)}


def run(command: list[str], log: Path) -> None:
    """Runs one CLI step; its output goes to ``log`` and a failure stops the experiment with the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log.open("w") as file:
        result = subprocess.run([sys.executable, *command], cwd=REPO, stdout=file, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    tail = log.read_text().strip().splitlines()[-1:] or [""]
    if result.returncode:
        raise SystemExit(f"error: step failed ({' '.join(command[:1])}), see {log}: {tail[0]}")
    # the step's duration stays with its outputs, so a rerun that reuses them still reports the experiment's time
    atomic_write_text(log.with_suffix(".seconds"), f"{seconds:.1f}\n")
    print(f"  {' '.join(command[:1])} done in {seconds:.0f}s ({log.name})", flush=True)


def dataset_flags(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(training flags, evaluation flags) for the chosen dataset."""
    if args.dataset == "builtin":
        return [], []
    if args.dataset == "voc_builtin":
        return ["--dataset", "voc"], ["--dataset", "voc"]
    from utils.data import fashion_mnist_available, prepare_fashion_mnist
    if not fashion_mnist_available():
        print("installing Debian's dataset-fashion-mnist ...", flush=True)
        subprocess.run(["bash", str(REPO / ".ci" / "install_data.sh")], check=True)
    root = prepare_fashion_mnist(args.out / "fashion_mnist_data", train_per_class=args.train_per_class,
                                 val_per_class=args.val_per_class, seed=0, imsize=args.imsize)
    images = str(root / "images")
    return (["--root_data", images, "--path_list", str(root / "train.csv"), "--val_list", str(root / "val.csv")],
            ["--root_data", images, "--path_lbl", str(root / "val.csv")])


def trained(run: RunFolder, epochs: int) -> bool:
    """Whether the training of ``run`` has logged all its epochs: its weights are written after every epoch, so a
    training killed after its first one has them too."""
    return len(run.read_log(epochs)) >= epochs


def run_seed(args: argparse.Namespace, seed: int, train_data: list[str], eval_data: list[str]) -> dict:
    folder = args.out / f"seed{seed}"
    common = ["--model", args.backbone, "--imsize", str(args.imsize), "--seed", str(seed), "--workers", "0",
              "--batch_size", str(args.batch_size), *train_data]
    if args.train_amp != "none":
        common += ["--amp", args.train_amp, "--channels_last"]
    steps = {
        "gap": ["main_INets.py", *common, "--epochs", str(args.epochs), "--store_dir", str(folder / "gap")],
        "ca": ["main_INets.py", *common, "--epochs", str(args.stream_epochs), "--pool", "ca", "--freeze",
               "--init_from", str(folder / "gap"), "--lr", str(args.stream_lr), "--store_dir", str(folder / "ca")],
    }
    epochs = {"gap": args.epochs, "ca": args.stream_epochs}
    for pool, command in steps.items():
        if args.fresh or not trained(RunFolder(folder / pool), epochs[pool]):
            # an interrupted training continues (--fresh has emptied the folder already)
            run([*command, "--resume"], folder / "logs" / f"train_{pool}.log")
    results = {}
    for pool in ("gap", "ca"):
        methods = [m for m in args.methods if pool == "ca" or not m.startswith("attention")]
        # Score-CAM costs one forward per channel of the target layer (1280 for EfficientNet-Lite0): on a CPU it
        # gets a smaller seeded subset of the images, scored in its own folder
        groups = {f"eval_{pool}": ([m for m in methods if m not in args.slow_methods], args.eval_fraction, "none"),
                  f"eval_{pool}_slow": ([m for m in methods if m in args.slow_methods], args.slow_fraction,
                                        args.slow_amp)}
        results[pool] = {"metrics": {}, "curves": {}, "images": {}, "folders": []}
        for name, (group, fraction, amp) in groups.items():
            if not group:
                continue
            evaluation = EvaluationFolder(folder / name)
            if args.fresh or not evaluation.classification.is_file():
                run(["recognition_imagenet.py", "--state_root", str(folder / pool), "--store_dir", str(evaluation.path),
                     "--batch_size", str(args.batch_size), "--fraction", str(fraction), "--seed", "0",
                     "--salient", "--method", *group, "--n_overlays", "8", "--workers", "0", "--channels_last",
                     "--amp", amp, *eval_data], evaluation.path / "recognition.log")
            if args.fresh or not evaluation.summary.is_file():
                run(["objrecon_imagenet.py", "--state_root", str(folder / pool), "--store_dir", str(evaluation.path),
                     "--batch_size", str(args.batch_size), "--method", *group, "--label", pool, "--channels_last",
                     "--amp", args.metrics_amp,
                     *eval_data], evaluation.path / "objrecon.log")
            classification = json.loads(evaluation.classification.read_text())
            summary = json.loads(evaluation.summary.read_text())
            if name == f"eval_{pool}":
                score_key = columns(args.dataset)[0][1]
                results[pool][score_key] = classification["top1" if score_key == "accuracy" else score_key]
                results[pool]["protocol"] = summary["protocol"]
                if MEAN_AP.key in classification:
                    results[pool]["class_ap"] = {c["name"]: c["ap"] for c in classification["per_class"]}
            results[pool]["metrics"].update(summary["results"])
            results[pool]["curves"].update(summary["curves"])
            results[pool]["images"].update({m: classification["subset"]["evaluated"] for m in group})
            results[pool]["folders"].append(str(evaluation.path))
            results[pool]["pairs"] = {**results[pool].get("pairs", {}),
                                      **{m: summary["results"][m].get(NUM_PAIRS) for m in group}}
    return results


def aggregate(per_seed: dict[int, dict], methods: list[str], dataset: str) -> list[dict]:
    """One row per (method, pooling): mean and spread (max - min over seeds) of every column."""
    rows = []
    score_key = columns(dataset)[0][1]
    for method in methods:
        for pool in ("gap", "ca"):
            if pool == "gap" and method.startswith("attention"):
                continue
            first = next(iter(per_seed.values()))[pool]
            row = {"method": method, "pooling": pool, "seeds": len(per_seed), "images": first["images"][method]}
            if first["pairs"].get(method) is not None:
                row["pairs"] = first["pairs"][method]
            for _, key in columns(dataset):
                values = [r[pool][key] if key == score_key else r[pool]["metrics"][method].get(key)
                          for r in per_seed.values()]
                values = [v for v in values if v is not None]
                if values:
                    row[key] = float(np.mean(values))
                    row[f"{key}_spread"] = float(np.max(values) - np.min(values))
            rows.append(row)
    return rows


def markdown_table(rows: list[dict], title: str, dataset: str, class_ap: dict[str, dict[str, list[float]]],
                   seeds: int = 2) -> str:
    """The poster-shaped table; with one seed there is no spread to show."""
    present = [(name, key) for name, key in columns(dataset) if any(key in r for r in rows)]
    counted = "images (pairs)" if any("pairs" in r for r in rows) else "images"
    spread = seeds > 1
    lines = [f"**{title}** " + ("(mean over seeds, +- half the max-min spread)" if spread else "(one seed: no spread)"),
             "",
             f"| method | pooling | {counted} | " + " | ".join(name for name, _ in present) + " |",
             "|---|---|---|" + "---|" * len(present)]
    for row in rows:
        cells = [(f"{row[key]:.2f}" + (f" +- {row[key + '_spread'] / 2:.2f}" if spread else "")) if key in row else ""
                 for _, key in present]
        count = f"{row['images']} ({row['pairs']})" if "pairs" in row else str(row["images"])
        lines.append(f"| {row['method']} | {row['pooling'].upper()} | {count} | " + " | ".join(cells) + " |")
    if dataset in MULTI_LABEL_DATASETS:
        return "\n".join(lines + ["", *class_ap_table(class_ap)]) + "\n"
    lines += ["", "Poster (ResNet-50, ImageNet; reference only):", "",
              "| method | pooling | Acc | " + " | ".join(metric(key).label for key in POSTER_METRICS) + " |",
              "|---|---|---|" + "---|" * len(POSTER_METRICS)]
    for (method, pool), values in POSTER.items():
        lines.append(f"| {method} | {pool.upper()} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


def class_ap_table(class_ap: dict[str, dict[str, list[float]]]) -> list[str]:
    """AP of each class (%) under GAP and CA, mean +- half the spread over seeds."""
    lines = ["AP per class (the scored validation images):", "", "| class | GAP | CA |", "|---|---|---|"]
    for name, by_pool in class_ap.items():
        cells = [f"{np.mean(v):.2f} +- {(np.max(v) - np.min(v)) / 2:.2f}" if v else "" for v in by_pool.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def per_class_ap(per_seed: dict[int, dict]) -> dict[str, dict[str, list[float]]]:
    """{class: {pool: [AP of each seed]}} where the evaluations report AP (multi-label data)."""
    table: dict[str, dict[str, list[float]]] = {}
    for result in per_seed.values():
        for pool in ("gap", "ca"):
            for name, ap in result[pool].get("class_ap", {}).items():
                table.setdefault(name, {"gap": [], "ca": []})[pool] += [] if ap is None else [ap]
    return table


def mean_curves(per_seed: dict[int, dict], methods: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Insertion and deletion panels: the first method (Grad-CAM) under GAP and CA, and the stream's attention."""
    lines = [(methods[0], "gap"), (methods[0], "ca")] + [(m, "ca") for m in methods if m.startswith("attention")]
    return {mode: {f"{method} / {pool.upper()}": np.mean([r[pool]["curves"][method][mode]
                                                          for r in per_seed.values()], axis=0)
                   for method, pool in lines}
            for mode in CURVE_METRICS}


def publish(out: Path, folder: Path, block: str, readme: Path = REPO / "README.md") -> None:
    """Copies the table, its data and the plot to ``folder`` and rewrites the README's block ``block`` (between
    ``<!-- results:<block> -->`` and ``<!-- /results:<block> -->``) with the table and the plot, so the table is
    never typed."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("results.md", "results.csv", "results.json", "curves.png"):
        shutil.copyfile(out / name, folder / name)
    begin, end = f"<!-- results:{block} -->", f"<!-- /results:{block} -->"
    text = readme.read_text()
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        plot = os.path.relpath(folder / "curves.png", readme.parent)
        content = f"{(out / 'results.md').read_text()}\n![insertion and deletion, {block}]({plot})\n"
        atomic_write_text(readme, f"{head}{begin}\n{content}{end}{tail}")
        print(f"{readme.name}: results of {block} refreshed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=DATASETS, default="builtin")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--imsize", type=int, default=128,
                        help="128 px gives EfficientNet-Lite0 4x4 feature maps, 224 px 7x7 (the poster's ResNet-50's)")
    parser.add_argument("--epochs", type=int, default=4, help="GAP fine-tuning epochs")
    parser.add_argument("--stream_epochs", type=int, default=4, help="CA stream epochs (frozen backbone)")
    parser.add_argument("--stream_lr", type=float, default=3e-3)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--eval_fraction", type=float, default=0.5, help="fraction of the validation set scored")
    parser.add_argument("--methods", nargs="+", default=["gradcam", "gradcam++", "scorecam", "attention"])
    parser.add_argument("--slow_methods", nargs="*", default=["scorecam"],
                        help="methods scored on --slow_fraction of the validation set only")
    parser.add_argument("--slow_fraction", type=float, default=0.1)
    parser.add_argument("--train_amp", choices=("none", "bf16"), default="none",
                        help="autocast (with channels_last) of both trainings")
    parser.add_argument("--metrics_amp", choices=("none", "bf16"), default="none",
                        help="autocast of objrecon's metric forwards (bf16: curves within 1e-2 of float32)")
    parser.add_argument("--slow_amp", choices=("none", "bf16"), default="none",
                        help="autocast of the slow methods' maps (Score-CAM's masked forwards; bf16 keeps the channel "
                             "scores within the budget of tests/explain/test_fast_paths.py, though a map can move to a "
                             "near-tied channel); their metrics run under --metrics_amp")
    parser.add_argument("--train_per_class", type=int, default=150, help="Fashion-MNIST training images per class")
    parser.add_argument("--val_per_class", type=int, default=30, help="Fashion-MNIST validation images per class")
    parser.add_argument("--block", default=None,
                        help="name of this experiment: its default --out folder and its README block "
                             "(default: the dataset's name)")
    parser.add_argument("--out", type=Path, default=None, help="default: runs/experiments/<block>")
    parser.add_argument("--fresh", action="store_true", help="rerun every step even when its outputs exist")
    parser.add_argument("--publish", type=Path, default=None,
                        help="copy results.md/csv/json and curves.png here and refresh the README's block")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md", help="the README --publish refreshes")
    args = parser.parse_args()
    args.block = args.block or args.dataset
    args.out = args.out or REPO / "runs" / "experiments" / args.block
    if args.fresh and args.out.exists():
        shutil.rmtree(args.out)
    train_data, eval_data = dataset_flags(args)
    per_seed = {}
    for seed in args.seeds:
        print(f"seed {seed}", flush=True)
        per_seed[seed] = run_seed(args, seed, train_data, eval_data)
    rows = aggregate(per_seed, args.methods, args.dataset)
    minutes = sum(float(f.read_text()) for f in args.out.rglob("*.seconds")) / 60
    title = (f"{args.dataset}, {args.backbone} at {args.imsize}px, seeds {' '.join(map(str, args.seeds))}, "
             f"{minutes:.1f} min")
    in_bf16 = [what for what, amp in (("training", args.train_amp), (f"{' '.join(args.slow_methods)} maps",
                                                                     args.slow_amp),
                                      ("metric forwards", args.metrics_amp)) if amp != "none"]
    if in_bf16:
        title += f", bf16 autocast: {', '.join(in_bf16)}"
    write_csv(args.out / "results.csv", rows)
    save_json(args.out / "results.json", {"setup": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                                          "per_seed": {str(s): {p: {k: v for k, v in r.items() if k != "curves"}
                                                                 for p, r in res.items()}
                                                       for s, res in per_seed.items()},
                                          "minutes": minutes})
    table = markdown_table(rows, title, args.dataset, per_class_ap(per_seed), seeds=len(args.seeds))
    atomic_write_text(args.out / "results.md", table)
    save_curve_panels(args.out / "curves.png", mean_curves(per_seed, args.methods),
                      f"{args.dataset}: mean over images and seeds {' '.join(map(str, args.seeds))}")
    # GAP's folders first: the baseline of the page's differences
    page = write_compare_page(args.out, [folder for pool in ("gap", "ca") for result in per_seed.values()
                                         for folder in result[pool]["folders"]])
    if args.publish:
        publish(args.out, args.publish, args.block, args.readme)
    print((args.out / "results.md").read_text())
    print(f"results: {args.out} (open {page})")


if __name__ == "__main__":
    main()
