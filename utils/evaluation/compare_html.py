"""compare.html: two or more objrecon evaluation folders side by side, e.g. GAP and CA, or several seeds of each.

Folders with the same label (objrecon's ``--label``, or ``--labels`` here) are replicates of one configuration (seeds);
the first label is the baseline. The page holds the poster-shaped table (one row per method and label: the mean over
replicates +- half their max-min spread, and the difference to the baseline's row), the mean curves, and per metric
the images where a label gains most and loses most against the baseline, with both maps, to see where the stream
helps and where it hurts. Images and maps are the thumbnails of each label's first folder (its report.html).

    python -m utils.evaluation.compare_html runs/seed0/eval_gap runs/seed0/eval_ca runs/seed1/eval_gap \\
        runs/seed1/eval_ca --out runs/compare
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from utils.data import MULTI_LABEL, class_name
from utils.faithfulness import CURVE_METRICS, METRICS, NUM_PAIRS, Metric, card_differences
from utils.runtime.cli import run_or_exit
from utils.runtime.io import ensure_writable_dir
from utils.runtime.layout import EvaluationFolder

from .html_page import (
    escape,
    link,
    metric_head,
    number,
    page,
    present_metrics,
    table,
    text_cell,
    text_head,
)
from .plots import save_curve_panels

PathLike = Union[str, Path]
PAIRS_PER_LIST = 6


@dataclass
class Evaluation:
    """One objrecon folder: its summary and, per method, its per-image rows (metrics.csv, numbers parsed)."""

    folder: EvaluationFolder
    label: str
    summary: dict
    images: dict[str, dict[Union[int, str], dict[str, Any]]]

    def accuracy(self, method: str) -> Optional[float]:
        """Top-1 accuracy (%) on the images scored with ``method`` (multi-label: the top-1 class is one of the classes
        present; None for folders without predictions)."""
        rows = self.images[method].values()
        if not rows or any(row.get("prediction") is None for row in rows):
            return None
        return 100.0 * float(np.mean([row["correct"] for row in rows]))


def read_evaluation(path: PathLike, label: Optional[str] = None) -> Evaluation:
    """An objrecon folder (or its summary.json), with one line naming the folder when it is not one."""
    path = Path(path)
    folder = EvaluationFolder(path if path.is_dir() or not path.suffix else path.parent)
    summary = EvaluationFolder.read_summary(folder.path, flag="evaluation folder")
    if not folder.metrics.is_file():
        raise FileNotFoundError(f"evaluation folder {folder.path} has no {folder.METRICS}: rerun objrecon_imagenet.py "
                                f"there")
    # a multi-label model's rows are image-class pairs, named row-class as in report.html
    pairs = summary.get("protocol", {}).get("task") == MULTI_LABEL
    images: dict[str, dict[Union[int, str], dict[str, Any]]] = {method: {} for method in summary["results"]}
    for row in folder.read_metrics():
        if row["method"] in images:
            key = f"{row['index']}-{row['target']}" if pairs else int(row["index"])
            images[row["method"]][key] = _numbers(row, pairs)
    for method, result in summary["results"].items():
        if len(images[method]) != result.get(NUM_PAIRS, result["num_images"]):
            raise ValueError(f"evaluation folder {folder.path}: its {folder.METRICS} has {len(images[method])} images "
                             f"for {method}, its {folder.SUMMARY} {result['num_images']}: rerun objrecon_imagenet.py "
                             f"there")
    return Evaluation(folder, label or summary.get("label") or folder.path.name, summary, images)


def _numbers(row: dict[str, str], pairs: bool) -> dict[str, Any]:
    """A metrics.csv row's numbers; ``label`` is the explained class of a multi-label pair."""
    prediction = int(row["prediction"]) if row.get("prediction") else None
    label = int(row["target"]) if pairs else int(row["label"])
    correct = str(prediction) in row["label"].split() if pairs else prediction == label
    parsed: dict[str, Any] = {"label": label, "prediction": prediction, "correct": correct}
    for metric in METRICS:
        if row.get(metric.key):
            parsed[metric.key] = float(row[metric.key])
    return parsed


def check_same_images(evaluations: Sequence[Evaluation]) -> None:
    """Every folder scored a method on the same images as the first folder with that method (one line if not)."""
    first: dict[str, Evaluation] = {}
    for evaluation in evaluations:
        for method, rows in evaluation.images.items():
            reference = first.setdefault(method, evaluation)
            expected = reference.images[method]
            if len(rows) != len(expected):
                raise ValueError(f"evaluation folder {evaluation.folder.path} scored {method} on {len(rows)} images, "
                                 f"{reference.folder.path} on {len(expected)}: compare evaluations of the same images "
                                 f"(same data, --fraction, --seed, --indexes)")
            if set(rows) != set(expected):
                raise ValueError(f"evaluation folder {evaluation.folder.path} scored {method} on other images than "
                                 f"{reference.folder.path}: compare evaluations of the same images (same data, "
                                 f"--fraction, --seed, --indexes)")


def group_by_label(evaluations: Sequence[Evaluation]) -> dict[str, list[Evaluation]]:
    """Replicates per label, labels in the order they first appear (the first is the baseline)."""
    groups: dict[str, list[Evaluation]] = {}
    for evaluation in evaluations:
        groups.setdefault(evaluation.label, []).append(evaluation)
    return groups


def write_compare_page(out: PathLike, folders: Sequence[PathLike], labels: Optional[Sequence[Optional[str]]] = None
                       ) -> Path:
    """Writes ``<out>/compare.html`` (and its curve plot) for two or more evaluation folders."""
    if len(folders) < 2:
        raise ValueError(f"give two or more evaluation folders to compare, got {len(folders)}")
    labels = list(labels) if labels is not None else [None] * len(folders)
    if len(labels) != len(folders):
        raise ValueError(f"--labels: {len(labels)} labels for {len(folders)} evaluation folders")
    evaluations = [read_evaluation(folder, label) for folder, label in zip(folders, labels)]
    check_same_images(evaluations)
    groups = group_by_label(evaluations)
    target = EvaluationFolder(out)
    methods = list(dict.fromkeys(method for e in evaluations for method in e.summary["results"]))
    metrics = present_metrics((r for e in evaluations for r in e.summary["results"].values()), METRICS)
    table_rows = [row for method in methods for row in _table_rows(method, groups, metrics)]
    _save_curves(target, groups)
    body = "\n".join([
        f"<h1>{escape(' vs '.join(groups))}: comparison</h1>",
        _sources(target, groups),
        *_protocol_notes(evaluations),
        "<h2>Results</h2>",
        f'<p class="note">Mean over the folders of each label{_spread_note(groups)}; under each value of a label '
        f"other than {escape(next(iter(groups)))}, its difference to that row (green: better, red: worse, grey: "
        "within the spreads).</p>",
        _results_table(table_rows, metrics),
        f"<h2>Mean insertion / deletion curves</h2>\n"
        f'<img class="plot wide" src="{link(target.curves("compare"), target.path)}" '
        'alt="mean insertion and deletion curves">',
        _pairs_section(target, groups, methods, metrics),
    ])
    return target.write_page(target.compare, page(f"{' vs '.join(groups)}: comparison", body,
                                                  ("tables.js", "compare.js")))


# ---- the results table

@dataclass
class Summary:
    """Mean and max-min spread of one column over a label's replicates."""

    mean: float
    spread: float

    @classmethod
    def of(cls, values: Sequence[Optional[float]]) -> Optional["Summary"]:
        values = [v for v in values if v is not None and math.isfinite(v)]
        return cls(float(np.mean(values)), float(np.max(values) - np.min(values))) if values else None


@dataclass
class TableRow:
    method: str
    label: str
    replicates: int
    images: int
    cells: dict[str, Optional[Summary]]               # "accuracy" and the metric keys
    deltas: dict[str, tuple[float, str]]              # vs the baseline's row: (difference, better|worse|within)


def _table_rows(method: str, groups: dict[str, list[Evaluation]], metrics: Sequence[Metric]) -> list[TableRow]:
    rows: list[TableRow] = []
    for label, group in groups.items():
        replicates = [e for e in group if method in e.summary["results"]]
        if not replicates:
            continue
        cells = {"accuracy": Summary.of([e.accuracy(method) for e in replicates]),
                 **{m.key: Summary.of([e.summary["results"][method].get(m.key) for e in replicates]) for m in metrics}}
        rows.append(TableRow(method, label, len(replicates), len(replicates[0].images[method]), cells, {}))
    baseline = rows[0] if rows and rows[0].label == next(iter(groups)) else None
    higher_is_better = {"accuracy": True, **{m.key: m.higher_is_better for m in metrics}}
    for row in rows[1:] if baseline else []:
        for key, cell in row.cells.items():
            base = baseline.cells.get(key)
            if cell is None or base is None:
                continue
            delta = cell.mean - base.mean
            verdict = "within" if abs(delta) <= (cell.spread + base.spread) / 2 else (
                "better" if (delta > 0) == higher_is_better[key] else "worse")
            row.deltas[key] = (delta, verdict)
    return rows


def _spread_note(groups: dict[str, list[Evaluation]]) -> str:
    return " &#177; half their max-min spread" if any(len(group) > 1 for group in groups.values()) else ""


def _results_table(rows: Sequence[TableRow], metrics: Sequence[Metric]) -> str:
    declared = {m.key: m for m in metrics}
    columns = [key for key in ("accuracy", *declared) if any(r.cells.get(key) for r in rows)]
    head = [text_head("method"), text_head("label"), "<th>folders</th>", "<th>images</th>",
            *("<th>Acc&#8593;</th>" if key == "accuracy" else metric_head(declared[key]) for key in columns)]
    body = []
    for row in rows:
        cells = [text_cell(row.method), text_cell(row.label), f"<td>{row.replicates}</td>", f"<td>{row.images}</td>"]
        for key in columns:
            cell = row.cells.get(key)
            if cell is None:
                cells.append("<td>-</td>")
                continue
            spread = f'<span class="spread"> &#177; {number(cell.spread / 2)}</span>' if row.replicates > 1 else ""
            delta = ""
            if key in row.deltas:
                value, verdict = row.deltas[key]
                delta = (f'<span class="delta {verdict}" data-key="{key}" data-delta="{value:.6f}">'
                         f"&#916; {value:+.2f}</span>")
            cells.append(f'<td data-key="{key}">{number(cell.mean)}{spread}{delta}</td>')
        body.append(cells)
    return table(head, body, 'class="sortable" id="results"')


def _sources(target: EvaluationFolder, groups: dict[str, list[Evaluation]]) -> str:
    items = []
    for label, group in groups.items():
        links = ", ".join(f'<a href="{link(e.folder.report, target.path)}">{escape(e.folder.path)}</a>'
                          if e.folder.report.is_file() else escape(e.folder.path) for e in group)
        items.append(f"<li><b>{escape(label)}</b> ({len(group)} folder{'s' if len(group) > 1 else ''}): {links}</li>")
    return f'<ul class="note">{"".join(items)}</ul>'


def _protocol_notes(evaluations: Sequence[Evaluation]) -> list[str]:
    first = evaluations[0]
    notes = []
    for other in evaluations[1:]:
        differences = card_differences(other.summary["protocol"], first.summary["protocol"])
        if differences:
            notes.append(f'<p class="note warning">{escape(other.folder.path)} differs from '
                         f"{escape(first.folder.path)} in {escape(', '.join(differences))}: not directly "
                         "comparable</p>")
    return notes


def _save_curves(target: EvaluationFolder, groups: dict[str, list[Evaluation]]) -> Path:
    """The mean curves of each label and method (averaged over the label's folders)."""
    panels: dict[str, dict[str, np.ndarray]] = {key: {} for key in CURVE_METRICS}
    for label, group in groups.items():
        for method in dict.fromkeys(m for e in group for m in e.summary["curves"]):
            replicates = [e for e in group if method in e.summary["curves"]]
            for key in CURVE_METRICS:
                curves = [np.asarray(e.summary["curves"][method][key], dtype=float) for e in replicates]
                lengths = {len(curve) for curve in curves}
                if len(lengths) > 1:
                    raise ValueError(f"evaluation folders {', '.join(str(e.folder.path) for e in replicates)} "
                                     f"(label {label}) have {method} curves of {sorted(lengths)} steps: replicates "
                                     f"of a label need the same protocol and image size")
                panels[key][f"{label} {method}"] = np.mean(curves, axis=0)
    return save_curve_panels(target.curves("compare"), panels, " vs ".join(groups))


# ---- where a label gains and loses most

def _pairs_section(target: EvaluationFolder, groups: dict[str, list[Evaluation]], methods: Sequence[str],
                   metrics: Sequence[Metric]) -> str:
    labels = list(groups)
    if len(labels) < 2:
        return ""
    baseline = groups[labels[0]]
    class_names = baseline[0].summary.get("class_names")
    options = "".join(f'<option value="{m.key}">{escape(m.label + m.arrow)}</option>' for m in metrics)
    sections = []
    for metric in metrics:
        parts = [f'<section class="pairs" data-metric="{metric.key}">',
                 f"<h3>{escape(metric.label + metric.arrow)}: {escape(metric.description)}</h3>"]
        for label in labels[1:]:
            for method in methods:
                pairs = _pairs(baseline, groups[label], method, metric)
                if pairs is None:
                    continue
                gains = [p for p in pairs if p[1] > 0][:PAIRS_PER_LIST]
                losses = [p for p in reversed(pairs) if p[1] < 0][:PAIRS_PER_LIST]
                parts.append(f"<h4>{escape(method)}: {escape(label)} against {escape(labels[0])}</h4>")
                for kind, chosen in (("gains", gains), ("losses", losses)):
                    figures = "".join(_figure(target, _first_with(baseline, method), _first_with(groups[label], method),
                                              method, metric, pair, class_names) for pair in chosen)
                    parts.append(f'<p class="note">largest {kind} ({len(chosen)})</p>')
                    parts.append(f'<div class="pair-list {kind}" data-method="{escape(method)}" '
                                 f'data-label="{escape(label)}">{figures}</div>')
        parts.append("</section>")
        sections.append("\n".join(parts))
    return "\n".join([
        "<h2>Where it helps and where it hurts</h2>",
        '<p class="note">Per image, each label\'s value is the mean over its folders; a gain is a change in the '
        "metric's better direction. Images and maps: the thumbnails of each label's first folder.</p>",
        f'<form id="controls" hidden><label>metric <select id="pair-metric">{options}</select></label></form>',
        *sections,
    ])


def _first_with(group: Sequence[Evaluation], method: str) -> Evaluation:
    """The label's first folder that scored ``method`` (an experiment scores the slow methods in folders of their
    own): its thumbnails show the pair."""
    return next(evaluation for evaluation in group if method in evaluation.images)


def _pairs(baseline: Sequence[Evaluation], other: Sequence[Evaluation], method: str, metric: Metric
           ) -> Optional[list[tuple[Union[int, str], float, float, float]]]:
    """(row, gain, baseline value, other value) per image, largest gain first (ties: dataset order); values are the
    per-image metric x its scale, averaged over each label's folders."""
    base = _per_image(baseline, method, metric)
    mine = _per_image(other, method, metric)
    if not base or not mine:
        return None
    sign = 1.0 if metric.higher_is_better else -1.0
    pairs = [(index, sign * (mine[index] - base[index]), base[index], mine[index]) for index in sorted(base)
             if index in mine]
    return sorted(pairs, key=lambda pair: -pair[1])


def _per_image(group: Sequence[Evaluation], method: str, metric: Metric) -> dict[Union[int, str], float]:
    replicates = [e.images[method] for e in group if method in e.images]
    if not replicates:
        return {}
    return {index: metric.scale * float(np.mean([rows[index][metric.key] for rows in replicates]))
            for index in replicates[0] if all(metric.key in rows[index] for rows in replicates)}


def _figure(target: EvaluationFolder, base: Evaluation, other: Evaluation, method: str, metric: Metric,
            pair: tuple[Union[int, str], float, float, float], class_names: Optional[Sequence[str]]) -> str:
    index, gain, base_value, other_value = pair
    name = class_name(class_names, base.images[method][index]["label"])
    images = [(base.folder.thumbnail(index), f"image {index}"),
              (base.folder.thumbnail(index, method), f"{method} of {base.label}"),
              (other.folder.thumbnail(index, method), f"{method} of {other.label}")]
    tags = "".join(f'<img class="thumb" src="{link(path, target.path)}" alt="{escape(alt)}" title="{escape(alt)}">'
                   for path, alt in images if path.is_file())
    return (f'<figure class="pair" data-index="{index}" data-gain="{gain:.6f}"><div class="images">{tags}</div>'
            f"<figcaption>#{index} {escape(name)}: {escape(metric.label)} {escape(base.label)} {base_value:.1f} "
            f"&#8594; {escape(other.label)} {other_value:.1f} ({'gain' if gain > 0 else 'loss'} {abs(gain):.1f})"
            f"</figcaption></figure>")


# ---- command line

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m utils.evaluation.compare_html", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", help="objrecon_imagenet.py --store_dir folders (two or more)")
    parser.add_argument("--out", required=True, help="folder that receives compare.html")
    parser.add_argument("--labels", nargs="+", default=None,
                        help="one label per folder (default: each folder's --label); equal labels are replicates")
    return parser


def run(args: argparse.Namespace) -> dict:
    ensure_writable_dir(args.out, "--out")
    path = write_compare_page(args.out, args.folders, args.labels)
    print(f"open {path}")
    return {"path": str(path)}


def main(argv: Optional[Sequence[str]] = None) -> dict:
    return run_or_exit(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
