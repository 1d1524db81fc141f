"""The paper's comparison (GAP vs CA-Stream) end to end with the project's own CLIs, at CPU scale.

For each seed: (1) train a GAP model; (2) build the CA model from it (--init_from), freeze backbone and
classifier, train the stream; (3) recognition + saliency for both; (4) AD/AI/AG, insertion/deletion (and the
pointing game where masks exist) for both. Then (5) a results table in the poster's shape (rows: method x
pooling; columns: accuracy, AD, AI, AG, insertion, deletion) as mean +- spread over the seeds, a plot of the
mean insertion/deletion curves (GAP vs CA), written to <out>/results.md, results.csv, results.json, curves.png;
every CA - GAP difference with its paired 95% interval and p-value (utils.faithfulness.paired: a cluster bootstrap
over images, each image's rows of all seeds together) in the table and in results.json's "differences", every
scored row in per_image.csv (the differences are computed from that file); each method against the first under
the same pooling; the learning curves of every training (training.csv, training.png); and compare.html beside them
(every evaluation folder: the table with the paired differences and their intervals, the images where the stream
gains and loses most; open it in a browser).

    python -m routines.experiments.compare --dataset builtin
    python -m routines.experiments.compare --dataset fashion_mnist                 # installs the Debian data
    python -m routines.experiments.compare --dataset builtin --imsize 224 --block builtin_224   # 7x7 maps
    python -m routines.experiments.compare --dataset voc_builtin                   # multi-label: mAP, pairs
    python -m routines.experiments.compare --recheck assets/results/builtin       # recompute from per_image.csv
Rerunning regenerates the table; finished steps (their output files exist) are reused unless --fresh.

On the multi-label set (``voc_builtin``: the built-in shapes in the VOCdevkit layout, ``--dataset voc`` of the
scripts) the first column is mAP, every metric is averaged over image-class pairs (each class present explained),
the pointing game uses the class's boxes with 15 px tolerance, and a second table gives each class's AP.
"""
from __future__ import annotations

import argparse
import ast
import json
import operator
import os
import shutil
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import yaml

from utils.evaluation.recognition import SCORE_PREFIX
from utils.faithfulness import AP_DEFINITIONS, CURVE_METRICS, MEAN_AP, METRICS, NUM_PAIRS, metric, paired_difference
from utils.reports.compare import write_compare_page
from utils.reports.plots import save_curve_panels, save_learning_curves
from utils.reports.replicates import (
    Evaluation,
    LabelDifference,
    read_evaluation,
    replicate_differences,
    replicates_from_rows,
)
from utils.runtime.io import atomic_write_text, read_csv, save_json, write_csv
from utils.runtime.layout import EvaluationFolder, RunFolder

from .steps import DATASETS, MULTI_LABEL_DATASETS, REPO, fashion_mnist_root, recorded_minutes, run, trained

# The stream's recipe, chosen on images held out of the training set (routines/experiments/sweep.py)
STREAM_RECIPE = REPO / "configs" / "ca_stream_miniature.yaml"

# The poster's columns (accuracy, then its metrics in its order) and the pointing game where masks exist.
POSTER_METRICS = ("ad", "ai", "ag", "insertion", "deletion")
METRIC_COLUMNS = tuple((metric(key).label, key) for key in (*POSTER_METRICS, "pointing_game"))
# how confident each model is, from classification.json: the confidence metrics read that confidence
CALIBRATION_COLUMNS = (("NLL", "nll"), ("ECE", "ece"))
# the record name of a difference that belongs to the classifier rather than to a saliency method
CLASSIFICATION = "classification"
# the pages whose blocks --publish rewrites: the README (the summary) and the docs (each experiment's table)
DOC_PAGES = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
SUMMARY_BLOCK, SUMMARY_METHOD, SUMMARY_SCORE = "summary", "gradcam", "score"
# what --publish copies next to the docs
PUBLISHED = ("results.md", "results.csv", "results.json", "per_image.csv", "curves.png", "training.csv",
             "training.png")


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


def dataset_flags(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(training flags, evaluation flags) for the chosen dataset."""
    if args.dataset == "builtin":
        return [], []
    if args.dataset == "voc_builtin":
        return ["--dataset", "voc"], ["--dataset", "voc"]
    root = fashion_mnist_root(args.out, args.train_per_class, args.val_per_class, args.imsize)
    images = str(root / "images")
    return (["--root_data", images, "--path_list", str(root / "train.csv"), "--val_list", str(root / "val.csv")],
            ["--root_data", images, "--path_lbl", str(root / "val.csv")])


def run_seed(args: argparse.Namespace, seed: int, train_data: list[str], eval_data: list[str]) -> dict:
    folder = args.out / f"seed{seed}"
    common = ["--model", args.backbone, "--imsize", str(args.imsize), "--seed", str(seed), "--workers", "0",
              "--batch_size", str(args.batch_size), *train_data]
    if args.train_amp != "none":
        common += ["--amp", args.train_amp, "--channels_last"]
    steps = {
        "gap": ["main_INets.py", *common, "--epochs", str(args.epochs), "--store_dir", str(folder / "gap")],
        "ca": ["main_INets.py", *common, "--config", str(args.stream_config), "--epochs", str(args.stream_epochs),
               "--pool", "ca", "--freeze", "--init_from", str(folder / "gap"), "--lr", str(args.stream_lr),
               "--store_dir", str(folder / "ca")],
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
                results[pool].update({key: classification.get(key) for _, key in CALIBRATION_COLUMNS})
                results[pool]["protocol"] = summary["protocol"]
                if MEAN_AP.key in classification:
                    results[pool]["class_ap"] = {c["name"]: c["ap"] for c in classification["per_class"]}
                    results[pool]["ap"] = classification["ap"]
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
    model_keys = {score_key, *(key for _, key in CALIBRATION_COLUMNS)}
    for method in methods:
        for pool in ("gap", "ca"):
            if pool == "gap" and method.startswith("attention"):
                continue
            first = next(iter(per_seed.values()))[pool]
            row = {"method": method, "pooling": pool, "seeds": len(per_seed), "images": first["images"][method]}
            if first["pairs"].get(method) is not None:
                row["pairs"] = first["pairs"][method]
            for _, key in table_columns(dataset):
                values = [r[pool].get(key) if key in model_keys else r[pool]["metrics"][method].get(key)
                          for r in per_seed.values()]
                values = [v for v in values if v is not None]
                if values:
                    row[key] = float(np.mean(values))
                    row[f"{key}_spread"] = float(np.max(values) - np.min(values))
            rows.append(row)
    return rows


def table_columns(dataset: str) -> tuple[tuple[str, str], ...]:
    """The recognition score, the two calibration columns, then the metrics."""
    score, *metrics = columns(dataset)
    return (score, *CALIBRATION_COLUMNS, *metrics)


def difference_cell(record: dict) -> str:
    """``+1.23 [-0.40, +2.90]``, bold when the interval excludes 0."""
    text = f"{record['mean']:+.2f} [{record['ci_low']:+.2f}, {record['ci_high']:+.2f}]"
    return f"**{text}**" if record["ci_low"] > 0 or record["ci_high"] < 0 else text


def markdown_table(rows: list[dict], title: str, dataset: str, class_ap: dict[str, dict[str, list[float]]],
                   seeds: int = 2, differences: list[dict] = ()) -> str:
    """The poster-shaped table, and under each method's CA row its paired CA - GAP differences; with one seed
    there is no spread to show."""
    present = [(name, key) for name, key in table_columns(dataset) if any(key in r for r in rows)]
    counted = "images (pairs)" if any("pairs" in r for r in rows) else "images"
    spread = seeds > 1
    by_cell = {(d["method"], d["metric"]): d for d in differences if d["baseline"] == "gap"}
    lines = [f"**{title}** " + ("(mean over seeds, +- half the max-min spread)" if spread else "(one seed: no spread)")
             + "; CA - GAP rows: the paired difference over every (seed, image) pair with its 95% interval (cluster "
               "bootstrap over images), **bold** where the interval excludes 0",
             "",
             f"| method | pooling | {counted} | " + " | ".join(name for name, _ in present) + " |",
             "|---|---|---|" + "---|" * len(present)]
    for row in rows:
        cells = [(f"{row[key]:.2f}" + (f" +- {row[key + '_spread'] / 2:.2f}" if spread else "")) if key in row else ""
                 for _, key in present]
        count = f"{row['images']} ({row['pairs']})" if "pairs" in row else str(row["images"])
        lines.append(f"| {row['method']} | {row['pooling'].upper()} | {count} | " + " | ".join(cells) + " |")
        method = row["method"]
        if row["pooling"] == "ca" and any(m == method for m, _ in by_cell):
            pairs = next(d["pairs"] for (m, _), d in by_cell.items() if m == method)
            cells = [difference_cell(by_cell[method, key]) if (method, key) in by_cell else
                     difference_cell(by_cell[CLASSIFICATION, key]) if (CLASSIFICATION, key) in by_cell else ""
                     for _, key in present]
            lines.append(f"| {method} | CA - GAP | {pairs} pairs | " + " | ".join(cells) + " |")
    if dataset in MULTI_LABEL_DATASETS:
        return "\n".join(lines + ["", *class_ap_table(class_ap)]) + "\n"
    lines += ["", "Poster (ResNet-50, ImageNet; reference only):", "",
              "| method | pooling | Acc | " + " | ".join(metric(key).label for key in POSTER_METRICS) + " |",
              "|---|---|---|" + "---|" * len(POSTER_METRICS)]
    for (method, pool), values in POSTER.items():
        lines.append(f"| {method} | {pool.upper()} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


def seed_evaluations(per_seed: dict[int, dict]) -> dict[str, list[tuple[int, Evaluation]]]:
    """{pool: [(seed, an evaluation folder of that seed read back)]}: a seed's folders are its method groups."""
    return {pool: [(seed, read_evaluation(folder, pool)) for seed, result in per_seed.items()
                   for folder in result[pool]["folders"]] for pool in ("gap", "ca")}


def recognised(folder: EvaluationFolder) -> dict[int, bool]:
    """{image: whether recognition's prediction was right} from predictions.csv, the classification the table's
    accuracy reports (the metric pass may forward in bf16 and predict otherwise); multi-label: the top-scored class
    is one of the classes present."""
    found = {}
    for row in read_csv(folder.predictions):
        if "prediction" in row:
            found[int(row["index"])] = row["prediction"] == row["label"]
        else:
            scores = [float(value) for key, value in row.items() if key.startswith(SCORE_PREFIX)]
            found[int(row["index"])] = str(int(np.argmax(scores))) in row["labels"].split()
    return found


def per_image_rows(evaluations: dict[str, list[tuple[int, Evaluation]]]) -> list[dict]:
    """per_image.csv: one row per (seed, pooling, method, image[, explained class]) with every metric of
    metrics.csv (fractions, as there) and whether recognition's prediction was right."""
    keys = [m.key for m in METRICS]
    rows = []
    for pool, seeded in evaluations.items():
        for seed, evaluation in seeded:
            right = recognised(evaluation.folder)
            for method, images in evaluation.images.items():
                for key, values in images.items():
                    index, _, target = str(key).partition("-")
                    correct = int(right[int(index)]) if int(index) in right else ""
                    row = {"seed": seed, "pooling": pool, "method": method, "index": int(index),
                           **({"target": int(target)} if target else {}), "correct": correct}
                    rows.append({**row, **{k: values[k] for k in keys if k in values}})
    present = [k for k in keys if any(k in r for r in rows)]
    return [{**r, **{k: r.get(k, "") for k in present}} for r in rows]


def nll_differences(per_seed: dict[int, dict]) -> list[dict]:
    """The paired CA - GAP difference of each image's NLL (single-label predictions.csv), over the seeds."""
    differences, clusters = [], []
    for result in per_seed.values():
        by_pool = {pool: {int(r["index"]): float(r["nll"]) for r in
                          read_csv(EvaluationFolder(result[pool]["folders"][0]).predictions) if r.get("nll")}
                   for pool in ("gap", "ca")}
        for index, gap in by_pool["gap"].items():
            if index in by_pool["ca"]:
                differences.append(by_pool["ca"][index] - gap)
                clusters.append(index)
    if not differences:
        return []
    return [LabelDifference(CLASSIFICATION, "nll", "gap", "ca", paired_difference(differences, clusters)).record()]


def published_differences(per_image: Path, methods: list[str]) -> list[dict]:
    """results.json's difference records from a per_image.csv: every CA - GAP difference (accuracy and the table's
    metrics), then every method - the first method under the same pooling."""
    replicates = replicates_from_rows(read_csv(per_image))
    metrics = [metric(key) for _, key in METRIC_COLUMNS]
    return [d.record() for d in replicate_differences(replicates, "gap", methods, metrics)]


def method_table(records: list[dict], baseline: str) -> str:
    """Each method against ``baseline`` (a method) under the same pooling, on the images both scored."""
    by_row: dict[tuple[str, str], dict[str, dict]] = {}
    for record in records:
        if record["baseline"] == baseline:
            by_row.setdefault((record["label"], record["method"]), {})[record["metric"]] = record
    if not by_row:
        return ""
    keys = [key for _, key in METRIC_COLUMNS if any(key in cells for cells in by_row.values())]
    lines = ["", f"Each method - {baseline} under the same pooling (paired over the images both scored, all seeds; "
                 f"95% interval, **bold** where it excludes 0):", "",
             "| method | pooling | pairs | " + " | ".join(metric(k).label for k in keys) + " |",
             "|---|---|---|" + "---|" * len(keys)]
    for (pool, method), cells in by_row.items():
        pairs = max(record["pairs"] for record in cells.values())
        lines.append(f"| {method} - {baseline} | {pool.upper()} | {pairs} | "
                     + " | ".join(difference_cell(cells[k]) if k in cells else "" for k in keys) + " |")
    return "\n".join(lines) + "\n"


def save_training_curves(args: argparse.Namespace) -> None:
    """training.csv and training.png: every training's per-epoch log (validation score and loss, training loss),
    so a reader sees whether the recipe converged, over-fitted or diverged before reading the table."""
    epochs = {"gap": args.epochs, "ca": args.stream_epochs}
    logs = {f"{pool.upper()} seed {seed}": RunFolder(args.out / f"seed{seed}" / pool).read_log(epochs[pool])
            for pool in ("gap", "ca") for seed in args.seeds}
    write_csv(args.out / "training.csv", [{"run": name, **row} for name, rows in logs.items() for row in rows])
    title = (f"training of the compared models: {args.dataset}, {args.backbone} at {args.imsize}px (GAP "
             f"{args.epochs} epochs, then the stream {args.stream_epochs} epochs at lr {args.stream_lr:g} on it)")
    save_learning_curves(args.out / "training.png", logs, title, split="validation")


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


def publish(out: Path, folder: Path, block: str, pages: Sequence[Path] = DOC_PAGES) -> None:
    """Copies the table, its data and the plot to ``folder``, rewrites the block ``block`` (between
    ``<!-- results:<block> -->`` and ``<!-- /results:<block> -->``) of the page of ``pages`` that holds it with the
    table and the plots, and the README's summary of every published folder, so no table is typed."""
    folder.mkdir(parents=True, exist_ok=True)
    if folder.resolve() != out.resolve():
        for name in PUBLISHED:
            shutil.copyfile(out / name, folder / name)

    def content(page: Path) -> str:
        plot, training = (os.path.relpath(folder / name, page.parent) for name in ("curves.png", "training.png"))
        text = f"{(out / 'results.md').read_text()}\n![insertion and deletion, {block}]({plot})\n"
        if (folder / "training.png").is_file():  # publications before the learning curves have none
            text += f"\n![learning curves of the compared models, {block}]({training})\n"
        return text

    refresh_block(pages, block, content)
    refresh_block(pages, SUMMARY_BLOCK, lambda page: summary_table(folder.parent, page))


def refresh_block(pages: Sequence[Path], block: str, content: Callable[[Path], str]) -> None:
    """Rewrites ``block`` of the first page that holds its two markers with ``content(page)``."""
    begin, end = f"<!-- results:{block} -->", f"<!-- /results:{block} -->"
    for page in pages:
        text = page.read_text() if page.is_file() else ""
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            _, tail = rest.split(end, 1)
            atomic_write_text(page, f"{head}{begin}\n{content(page)}{end}{tail}")
            print(f"{page.name}: results of {block} refreshed")
            return


def summary_table(results: Path, page: Path) -> str:
    """The README's table: per published folder under ``results`` (those with difference records), the score
    of GAP and CA, and Grad-CAM's CA - GAP differences with their intervals."""
    keys = [key for _, key in METRIC_COLUMNS]
    lines = [f"| experiment | {SUMMARY_SCORE} GAP -> CA | " + " | ".join(metric(k).label for k in keys) + " |",
             "|---|---|" + "---|" * len(keys)]
    for path in sorted(results.glob("*/results.json")):
        data = json.loads(path.read_text())
        found = {r["metric"]: r for r in data.get("differences", [])
                 if r["method"] == SUMMARY_METHOD and r["baseline"] == "gap"}
        if not found:
            continue
        setup = data["setup"]
        score = columns(setup["dataset"])[0][1]
        means = {row["pooling"]: row[score] for row in data["rows"] if row["method"] == SUMMARY_METHOD}
        seeds = len(data["per_seed"])
        link = os.path.relpath(path.parent / "results.md", page.parent)
        name = f"[{path.parent.name}]({link}): {setup['backbone']}, {setup['imsize']} px, {seeds} seed(s)"
        lines.append(f"| {name} | {means['gap']:.2f} -> {means['ca']:.2f} | "
                     + " | ".join(difference_cell(found[k]) if k in found else "" for k in keys) + " |")
    return (f"{SUMMARY_METHOD} under CA - GAP: the paired difference over every (seed, image) pair with its 95% "
            f"interval, **bold** where it excludes 0 ({SUMMARY_SCORE}: accuracy, or mAP on multi-label data)\n\n"
            + "\n".join(lines) + "\n")


def recheck(folder: Path, block: Optional[str], pages: Sequence[Path]) -> None:
    """--recheck: recompute every difference of a published folder from its per_image.csv alone and check them
    against its results.json (one line and exit status 1 where they differ); with --block, write the recomputed
    records into results.json, its table into results.md and its block of the docs (publications made before the
    records existed)."""
    results = json.loads((folder / "results.json").read_text())
    setup = results["setup"]
    methods = ast.literal_eval(setup["methods"])
    recomputed = published_differences(folder / "per_image.csv", methods)
    key = operator.itemgetter("method", "metric", "baseline", "label")
    published = {key(r): r for r in results.get("differences", [])}
    fields = ("mean", "ci_low", "ci_high", "p_value", "pairs")
    compared = [(r, published[key(r)]) for r in recomputed if key(r) in published]
    worst = max((abs(r[f] - p[f]) for r, p in compared for f in fields), default=0.0)
    print(f"{folder}: {len(recomputed)} differences recomputed from per_image.csv, {len(compared)} of them in "
          f"results.json, largest deviation {worst:.3g}")
    if block is None:
        print(method_table(recomputed, methods[0]))
        if worst > 1e-9 or len(compared) < len(recomputed):
            raise SystemExit(f"error: {folder}: results.json does not hold the differences of its per_image.csv "
                             f"({len(recomputed) - len(compared)} missing, largest deviation {worst:.3g})")
        return
    differences = recomputed + [r for r in results.get("differences", []) if r["method"] == CLASSIFICATION]
    title = results.get("title") or (folder / "results.md").read_text().split("**")[1]
    per_seed = results["per_seed"]
    table = markdown_table(results["rows"], title, setup["dataset"], per_class_ap(per_seed), seeds=len(per_seed),
                           differences=differences) + method_table(differences, methods[0])
    save_json(folder / "results.json", {**results, "title": title, "differences": differences})
    atomic_write_text(folder / "results.md", table)
    publish(folder, folder, block, pages)


def read_recipe(path: Path) -> dict:
    """The stream recipe's flag values (a main_INets.py config); its lr and epochs are the comparison's defaults."""
    try:
        recipe = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise SystemExit(f"error: --stream_config {path}: {error}".splitlines()[0]) from None
    missing = [key for key in ("lr", "epochs") if key not in recipe]
    if missing:
        raise SystemExit(f"error: --stream_config {path}: no {', '.join(missing)}; expected a main_INets.py config "
                         f"with the stream's lr and epochs")
    return recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=DATASETS, default="builtin")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--imsize", type=int, default=128,
                        help="128 px gives EfficientNet-Lite0 4x4 feature maps, 224 px 7x7 (the poster's ResNet-50's)")
    parser.add_argument("--epochs", type=int, default=8,
                        help="GAP fine-tuning epochs (8: the held-out curves of sweep.py; 4 leaves Fashion-MNIST's "
                             "GAP model 4 points short)")
    parser.add_argument("--stream_config", type=Path, default=STREAM_RECIPE,
                        help="the stream's recipe (main_INets.py flags: lr, epochs, weight decay, warm-up), chosen "
                             "on held-out training images by routines/experiments/sweep.py")
    parser.add_argument("--stream_epochs", type=int, default=None, help="CA stream epochs (default: the recipe's)")
    parser.add_argument("--stream_lr", type=float, default=None, help="CA stream peak learning rate (default: the "
                                                                      "recipe's)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--eval_fraction", type=float, default=1.0, help="fraction of the validation set scored")
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
                        help="name of this experiment: its default --out folder and its block of the docs "
                             "(default: the dataset's name)")
    parser.add_argument("--out", type=Path, default=None, help="default: runs/experiments/<block>")
    parser.add_argument("--fresh", action="store_true", help="rerun every step even when its outputs exist")
    parser.add_argument("--publish", type=Path, default=None,
                        help="copy results.md/csv/json, per_image.csv, curves.png and the learning curves here and "
                             "refresh the experiment's block of the docs and the README's summary")
    parser.add_argument("--readme", type=Path, nargs="+", default=list(DOC_PAGES),
                        help="the pages whose results blocks --publish refreshes (default: README.md and docs/*.md)")
    parser.add_argument("--recheck", type=Path, default=None, metavar="FOLDER",
                        help="recompute the differences of a published folder from its per_image.csv and check its "
                             "results.json (nothing is trained or evaluated); with --block, rewrite its results "
                             "and that block of the docs from them")
    args = parser.parse_args()
    if args.recheck:
        recheck(args.recheck, args.block, args.readme)
        return
    recipe = read_recipe(args.stream_config)
    args.stream_epochs = args.stream_epochs or recipe["epochs"]
    args.stream_lr = args.stream_lr or recipe["lr"]
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
    minutes = recorded_minutes(args.out)
    title = (f"{args.dataset}, {args.backbone} at {args.imsize}px, seeds {' '.join(map(str, args.seeds))}, "
             f"{minutes:.1f} min")
    in_bf16 = [what for what, amp in (("training", args.train_amp), (f"{' '.join(args.slow_methods)} maps",
                                                                     args.slow_amp),
                                      ("metric forwards", args.metrics_amp)) if amp != "none"]
    if in_bf16:
        title += f", bf16 autocast: {', '.join(in_bf16)}"
    definitions = {result[pool].get("ap") for result in per_seed.values() for pool in ("gap", "ca")} - {None}
    if definitions:  # multi-label: which AP the mAP column is
        title += f", AP: {', '.join(sorted(definitions))} ({'; '.join(AP_DEFINITIONS[d] for d in sorted(definitions))})"
    write_csv(args.out / "per_image.csv", per_image_rows(seed_evaluations(per_seed)))
    # the differences are computed from the published file itself, as --recheck recomputes them
    differences = published_differences(args.out / "per_image.csv", args.methods)
    if args.dataset not in MULTI_LABEL_DATASETS:
        differences += nll_differences(per_seed)
    table = markdown_table(rows, title, args.dataset, per_class_ap(per_seed), seeds=len(args.seeds),
                           differences=differences) + method_table(differences, args.methods[0])
    save_training_curves(args)
    write_csv(args.out / "results.csv", rows)
    save_json(args.out / "results.json", {"setup": {k: str(v) for k, v in vars(args).items()}, "title": title,
                                          "rows": rows,
                                          "per_seed": {str(s): {p: {k: v for k, v in r.items() if k != "curves"}
                                                                 for p, r in res.items()}
                                                       for s, res in per_seed.items()},
                                          "differences": differences, "minutes": minutes})
    atomic_write_text(args.out / "results.md", table)
    save_curve_panels(args.out / "curves.png", mean_curves(per_seed, args.methods),
                      f"{args.dataset}: mean over images and seeds {' '.join(map(str, args.seeds))}")
    # GAP's folders first: the baseline of the page's differences
    folders = {pool: [folder for result in per_seed.values() for folder in result[pool]["folders"]]
               for pool in ("gap", "ca")}
    page = write_compare_page(args.out, [*folders["gap"], *folders["ca"]],
                              [pool.upper() for pool, found in folders.items() for _ in found])
    if args.publish:
        publish(args.out, args.publish, args.block, args.readme)
    print((args.out / "results.md").read_text())
    print(f"results: {args.out} (open {page})")


if __name__ == "__main__":
    main()
