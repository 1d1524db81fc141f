"""report.html: the page of one objrecon evaluation folder, to look at rather than parse.

The summary table (one row per method) with the protocol card, the mean insertion / deletion curves, and a gallery:
each image with each method's map over it and its per-image metrics, sortable by any metric and filterable by class
and by correct / incorrect prediction; a click on an image draws its own curves. The page opens from the disk
(file://, no server, no CDN): the thumbnails are small JPEG files in ``report_files/``, the numbers are in the page.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from utils.data import MULTI_LABEL, class_name
from utils.explain import overlay
from utils.faithfulness import CURVE_METRICS, METRICS, Metric
from utils.runtime.layout import EvaluationFolder

from .page import (
    best_values,
    card_table,
    escape,
    link,
    metric_data,
    metric_head,
    number,
    page,
    present_metrics,
    table,
    text_cell,
    text_head,
)
from .plots import to_uint8_image

# 96 px JPEGs keep a gallery of 300 images x 4 methods near 4 MB (tests/reports/test_pages.py)
THUMBNAIL_PX = 96
JPEG_QUALITY = 75
DEFAULT_GALLERY_IMAGES = 300


def gallery_rows(rows: Sequence[int], limit: int) -> set[int]:
    """The rows the gallery shows: all of them up to ``limit``, else ``limit`` rows evenly spaced over them."""
    if limit <= 0:
        return set()
    if len(rows) <= limit:
        return set(rows)
    return {rows[position] for position in np.linspace(0, len(rows) - 1, limit).round().astype(int)}


def thumbnails(image: torch.Tensor, maps: Mapping[str, torch.Tensor], mean: Sequence[float], std: Sequence[float]
               ) -> dict[str, Any]:
    """JPEG bytes of one normalised (3, H, W) image, ``THUMBNAIL_PX`` wide, and of each method's map over it:
    ``{"image": bytes, "maps": {method: bytes}}``. Small enough to travel with the gathered per-image rows."""
    picture = Image.fromarray(to_uint8_image(image, mean, std))
    height = max(1, round(picture.height * THUMBNAIL_PX / picture.width))
    small = np.asarray(picture.resize((THUMBNAIL_PX, height), Image.Resampling.LANCZOS))
    return {"image": _jpeg(small),
            "maps": {method: _jpeg(overlay(small, saliency)) for method, saliency in maps.items()}}


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return buffer.getvalue()


def write_report_page(folder: EvaluationFolder, summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
                      class_names: Optional[Sequence[str]] = None) -> Path:
    """Writes ``report.html`` and its thumbnails: ``summary`` as objrecon writes summary.json, ``records`` its
    per-image rows, per image-class pair for a multi-label model (those with ``thumbnails`` make the gallery, in the
    order given)."""
    methods = list(summary["results"])
    metrics = present_metrics(summary["results"].values(), METRICS)
    pairs = summary["protocol"].get("task") == MULTI_LABEL
    gallery = [record for record in records if "thumbnails" in record]
    folder.write_thumbnails({path: data for record in gallery
                             for path, data in _thumbnail_files(folder, record, _key(record, pairs))})
    images = [_image_data(record, methods, metrics, class_names, pairs) for record in gallery]
    accuracy = 100.0 * float(np.mean([_correct(record, methods, pairs) for record in records]))
    body = "\n".join([
        f"<h1>{escape(summary['label'])}: interpretability report</h1>",
        f'<p class="note">{_headline(summary, len(records), accuracy, pairs)}</p>',
        "<h2>Summary</h2>",
        _summary_table(summary["results"], metrics),
        f'<p class="note">protocol: {escape(_protocol_line(summary["protocol"]))}</p>',
        f"<details><summary>protocol card</summary>\n{card_table(summary['protocol'])}\n</details>",
        _curves_section(folder),
        "<h2>Gallery</h2>",
        f'<p class="note">{len(gallery)} of {len(records)} {_items(pairs)} (evenly spaced over the evaluated rows) '
        f"with each method's map; per-image metrics x their scale. Click an image for its insertion / deletion "
        f"curves.</p>",
        _controls(methods, metrics, images),
        _gallery_table(folder, gallery, images, methods, metrics),
        '<aside id="image-curves" hidden></aside>',
    ])
    data = {"methods": methods, "metrics": metric_data(metrics), "curve_metrics": list(CURVE_METRICS),
            "images": images}
    return folder.write_page(folder.report, page(f"{summary['label']}: interpretability report", body,
                                                 ("tables.js", "report.js"), data))


def _key(record: Mapping[str, Any], pairs: bool) -> str:
    """A gallery item's name: its dataset row, with the explained class for a multi-label model's pairs."""
    return f"{record['index']}-{record['target']}" if pairs else str(record["index"])


def _items(pairs: bool) -> str:
    return "image-class pairs" if pairs else "images"


def _correct(record: Mapping[str, Any], methods: Sequence[str], pairs: bool) -> bool:
    """Single-label: the top-1 prediction is the label; multi-label: it is one of the classes present."""
    prediction = record["methods"][methods[0]]["prediction"]
    return str(prediction) in str(record["label"]).split() if pairs else prediction == record["label"]


def _thumbnail_files(folder: EvaluationFolder, record: Mapping[str, Any], key: str) -> list[tuple[Path, bytes]]:
    files = [(folder.thumbnail(key), record["thumbnails"]["image"])]
    return files + [(folder.thumbnail(key, method), data) for method, data in record["thumbnails"]["maps"].items()]


def _finite(value: Any) -> Optional[float]:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def _image_data(record: Mapping[str, Any], methods: Sequence[str], metrics: Sequence[Metric],
                class_names: Optional[Sequence[str]], pairs: bool) -> dict:
    """What the gallery's script knows of one item (an image, or an image-class pair): its class (the explained
    class of a pair), prediction, per-method values (x scale) and curves."""
    prediction = record["methods"][methods[0]]["prediction"]
    values = {method: {m.key: _finite(m.scale * record["methods"][method][m.key]) if m.key in record["methods"][method]
                       else None for m in metrics} for method in methods}
    curves = {method: {key: [round(float(v), 4) for v in record["methods"][method][f"{key}_curve"]]
                       for key in CURVE_METRICS} for method in methods}
    label = record["target"] if pairs else record["label"]
    return {"index": _key(record, pairs), "row": record["index"], "label": label,
            "class": class_name(class_names, label), "prediction": prediction,
            "predicted_class": class_name(class_names, prediction), "correct": _correct(record, methods, pairs),
            "values": values, "curves": curves}


def _headline(summary: Mapping[str, Any], count: int, accuracy: float, pairs: bool) -> str:
    model = summary["protocol"].get("model", {})
    measure = "top-1 among the classes present" if pairs else "top-1 accuracy"
    parts = [f"{count} {_items(pairs)} x {len(summary['results'])} methods",
             f"model {escape(model.get('backbone'))} ({escape(model.get('pool'))}) from "
             f"{escape(model.get('state_root'))}", f"{measure} on these {_items(pairs)} {accuracy:.1f}%"]
    if "seconds" in summary.get("run", {}):
        parts.append(f"{summary['run']['seconds']:.1f} s")
    return "; ".join(parts) + ". Numbers: metrics.csv (per image), summary.json (means)."


def _protocol_line(card: Mapping[str, Any]) -> str:
    return (f"{card.get('name')}, {card.get('steps')} steps of {card.get('step_pixels')} px, insertion from a "
            f"{card.get('blur_kernel')}x{card.get('blur_kernel')} sigma-{card.get('blur_sigma')} blur, deletion to "
            f"{card.get('deletion_substrate')}, {card.get('class_source_description')}, AD/AI/AG masking in "
            f"{card.get('masking_space')} space, {card.get('image_size')} px, {card.get('num_images')} images")


def _summary_table(results: Mapping[str, Mapping[str, Any]], metrics: Sequence[Metric]) -> str:
    best = best_values(results, metrics)
    rows = []
    for method, result in results.items():
        cells = [text_cell(method), f"<td>{result['num_images']}</td>"]
        for metric in metrics:
            value = result.get(metric.key)
            marked = ' class="best"' if value is not None and len(results) > 1 and value == best.get(metric.key) \
                else ""
            cells.append(f"<td{marked}>{number(value)}</td>")
        rows.append(cells)
    head = [text_head("method"), "<th>images</th>", *map(metric_head, metrics)]
    return table(head, rows, 'class="sortable" id="summary"')


def _curves_section(folder: EvaluationFolder) -> str:
    plot = folder.curves("methods")
    if not plot.is_file():
        return ""
    return (f"<h2>Mean insertion / deletion curves</h2>\n"
            f'<img class="plot" src="{link(plot, folder.path)}" alt="mean insertion and deletion curves per method">')


def _controls(methods: Sequence[str], metrics: Sequence[Metric], images: Sequence[dict]) -> str:
    """Sort and filter controls: hidden until the script runs, as they do nothing without it."""
    def select(name: str, label: str, options: Sequence[tuple[str, str]]) -> str:
        items = "".join(f'<option value="{escape(value)}">{escape(text)}</option>' for value, text in options)
        return f'<label>{label} <select id="{name}">{items}</select></label>'

    classes = sorted({(image["label"], image["class"]) for image in images})
    return "\n".join([
        '<form id="controls" hidden>',
        select("sort-metric", "sort by", [("", "dataset order"), *((m.key, m.label + m.arrow) for m in metrics)]),
        select("sort-method", "of", [(method, method) for method in methods]),
        select("sort-order", "", [("best", "best first"), ("worst", "worst first")]),
        select("filter-class", "class", [("", "all"), *((str(label), name) for label, name in classes)]),
        select("filter-outcome", "prediction", [("", "all"), ("correct", "correct"), ("incorrect", "incorrect")]),
        '<span id="shown"></span>',
        "</form>",
    ])


def _gallery_table(folder: EvaluationFolder, gallery: Sequence[Mapping[str, Any]], images: Sequence[dict],
                   methods: Sequence[str], metrics: Sequence[Metric]) -> str:
    # the values in two columns, read down
    columns = f'style="grid-template-rows: repeat({math.ceil(len(metrics) / 2)}, auto)"'
    rows = []
    for record, image in zip(gallery, images):
        index, row = image["index"], image["row"]
        correct = image["correct"]
        outcome = "correct" if correct else "incorrect"
        verdict = (f'<span class="{outcome}">{"&#10003;" if correct else "&#10007;"} predicted '
                   f'{escape(image["predicted_class"])}</span>')
        cells = [f"<td>{row}</td>",
                 f'<td><img class="thumb" src="{link(folder.thumbnail(index), folder.path)}" alt="image {row}" '
                 f'title="{escape(record["path"])}">'
                 f'{escape(image["class"])}<br>{verdict}</td>']
        for method in methods:
            values = "".join(f"<span>{escape(m.label)} {_short(image['values'][method][m.key])}</span>"
                             for m in metrics)
            cells.append(f'<td><img class="thumb" src="{link(folder.thumbnail(index, method), folder.path)}" '
                         f'alt="{escape(method)} on image {row}"><div class="values" {columns}>{values}</div></td>')
        rows.append((f'<tr class="image-row" data-index="{index}" data-label="{image["label"]}" '
                     f'data-outcome="{outcome}">', cells))
    head = [text_head("#"), text_head("image"), *map(text_head, methods)]
    body = "\n".join(f"{opening}{''.join(cells)}</tr>" for opening, cells in rows)
    return (f'<table id="gallery">\n<thead><tr>{"".join(head)}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>')


def _short(value: Optional[float]) -> str:
    """A per-image value as the gallery shows it: 0/100 outcomes without decimals."""
    if value is None:
        return "-"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
