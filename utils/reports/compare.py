"""compare.html: two or more objrecon evaluation folders side by side, e.g. GAP and CA, or several seeds of each.

Folders with the same label (objrecon's ``--label``, or ``--labels`` here) are replicates of one configuration (seeds);
the first label is the baseline. The page holds the poster-shaped table (one row per method and label: the mean over
replicates +- half their max-min spread, and the difference to the baseline's row), the mean curves, and per metric
the images where a label gains most and loses most against the baseline, with both maps, to see where the stream
helps and where it hurts. Images and maps are the thumbnails of each label's first folder (its report.html).

    python -m utils.reports.compare runs/seed0/eval_gap runs/seed0/eval_ca runs/seed1/eval_gap \\
        runs/seed1/eval_ca --out runs/compare

Installed as a package (``pip install -e .``), the same command is ``ca-stream-compare``.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from utils.data import class_name
from utils.faithfulness import CURVE_METRICS, METRICS, Metric, card_differences
from utils.runtime.cli import run_or_exit
from utils.runtime.io import ensure_writable_dir
from utils.runtime.layout import EvaluationFolder

from .page import (
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
from .replicates import (
    Evaluation,
    LabelDifference,
    check_same_images,
    group_by_label,
    label_differences,
    read_evaluation,
)

PathLike = Union[str, Path]
PAIRS_PER_LIST = 6


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare` found and wrote: the compared ``folders`` by label (``groups``, the baseline first), the
    results ``table`` (one row per method and label: means over the label's folders, and the paired difference to
    the baseline's row), every paired ``difference`` of a label to the baseline, and the ``page`` (compare.html)
    with its ``curves`` plot."""

    groups: dict[str, list[Path]]
    table: list[TableRow]
    differences: list[LabelDifference]
    page: Path
    curves: Path

    @property
    def baseline(self) -> str:
        return next(iter(self.groups))


def compare(folders: Sequence[PathLike], out: PathLike, labels: Optional[Sequence[Optional[str]]] = None
            ) -> Comparison:
    """Compares two or more objrecon evaluation folders (equal labels: replicates, e.g. seeds; default: each
    folder's ``--label``; the first label is the baseline) and writes ``<out>/compare.html`` and its curve plot.

    Example::

        comparison = compare(["Evaluation/gap", "Evaluation/ca"], "Evaluation/compare")
        for difference in comparison.differences:   # CA - GAP per method and metric, with its 95% interval
            print(difference.method, difference.metric, difference.result.mean, difference.result.ci_low)
    """
    ensure_writable_dir(out, "--out")
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
    found = label_differences(groups, methods, metrics)
    differences = {(d.method, d.label, d.metric): d for d in found}
    table_rows = [row for method in methods for row in _table_rows(method, groups, metrics, differences)]
    curves = _save_curves(target, groups)
    body = "\n".join([
        f"<h1>{escape(' vs '.join(groups))}: comparison</h1>",
        _sources(target, groups),
        *_protocol_notes(evaluations),
        "<h2>Results</h2>",
        f'<p class="note">Mean over the folders of each label{_spread_note(groups)}; under each value of a label '
        f"other than {escape(next(iter(groups)))}, its paired difference to that row over the images both scored, "
        "with its 95% interval (cluster bootstrap over images, all folders of an image together) and the sign-flip "
        "p-value; green: better, red: worse, grey: the interval holds 0. The k-th folder of a label is paired with "
        "the k-th folder of the baseline.</p>",
        _results_table(table_rows, metrics),
        f"<h2>Mean insertion / deletion curves</h2>\n"
        f'<img class="plot wide" src="{link(target.curves("compare"), target.path)}" '
        'alt="mean insertion and deletion curves">',
        _pairs_section(target, groups, methods, metrics),
    ])
    path = target.write_page(target.compare, page(f"{' vs '.join(groups)}: comparison", body,
                                                  ("tables.js", "compare.js")))
    return Comparison({label: [e.folder.path for e in group] for label, group in groups.items()}, table_rows, found,
                      path, curves)


def write_compare_page(out: PathLike, folders: Sequence[PathLike], labels: Optional[Sequence[Optional[str]]] = None
                       ) -> Path:
    """Writes ``<out>/compare.html`` (and its curve plot) for two or more evaluation folders (:func:`compare`)."""
    return compare(folders, out, labels).page


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
    deltas: dict[str, tuple[LabelDifference, str]]    # vs the baseline's row: (difference, better|worse|within)


def _table_rows(method: str, groups: dict[str, list[Evaluation]], metrics: Sequence[Metric],
                differences: dict[tuple[str, str, str], LabelDifference]) -> list[TableRow]:
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
        for key in row.cells:
            difference = differences.get((method, row.label, key))
            if difference is None:
                continue
            result = difference.result
            verdict = "within" if not result.significant else (
                "better" if (result.mean > 0) == higher_is_better[key] else "worse")
            row.deltas[key] = (difference, verdict)
    return rows


def _p_text(p_value: float) -> str:
    return f"{p_value:.3f}" if p_value >= 0.001 else "<0.001"


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
                difference, verdict = row.deltas[key]
                result = difference.result
                delta = (f'<span class="delta {verdict}" data-key="{key}" data-delta="{result.mean:.6f}" '
                         f'data-p="{result.p_value:.6f}">&#916; {result.mean:+.2f}</span>'
                         f'<span class="interval">[{result.ci_low:+.2f}, {result.ci_high:+.2f}] '
                         f"p {_p_text(result.p_value)}</span>")
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

COMMAND = "python -m utils.reports.compare"
SCRIPT = "ca-stream-compare"  # pyproject.toml's [project.scripts]: the same command once the package is installed


def build_parser(prog: str = COMMAND) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", help="objrecon_imagenet.py --store_dir folders (two or more)")
    parser.add_argument("--out", required=True, help="folder that receives compare.html")
    parser.add_argument("--labels", nargs="+", default=None,
                        help="one label per folder (default: each folder's --label); equal labels are replicates")
    return parser


def run(args: argparse.Namespace) -> dict:
    path = compare(args.folders, args.out, args.labels).page
    print(f"open {path}")
    return {"path": str(path)}


def main(argv: Optional[Sequence[str]] = None, prog: str = COMMAND) -> dict:
    return run_or_exit(run, build_parser(prog).parse_args(argv))


def console() -> None:
    """The ``ca-stream-compare`` entry point: :func:`main` on ``sys.argv``, returning nothing, as an installed
    script's exit status is what its function returns."""
    main(prog=SCRIPT)


if __name__ == "__main__":
    main()
