"""What report.html and compare.html are made of: one self-contained page (its style and script inline, no server,
no CDN), tables that read without JavaScript (the scripts only sort, filter and draw a clicked image's curves), and
the metric columns read off the declarations of :mod:`utils.faithfulness.metrics`."""
from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence
from urllib.parse import quote

from utils.faithfulness import Metric

WEB = Path(__file__).with_name("web")


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def link(target: Path, page_folder: Path) -> str:
    """``target`` as a relative URL from a page in ``page_folder``: the pages open from the disk (file://)."""
    return quote(Path(os.path.relpath(target, page_folder)).as_posix())


def page(title: str, body: str, scripts: Sequence[str], data: Optional[Any] = None) -> str:
    """A whole page: ``body`` (HTML), the stylesheet, ``scripts`` (files of ``web/``) and the ``data`` they read
    (JSON, in the element ``page-data``)."""
    parts = ['<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">',
             f"<title>{escape(title)}</title>",
             # no favicon request: a missing file would be a console error on file://
             '<link rel="icon" href="data:,">',
             f'<style>\n{(WEB / "page.css").read_text()}</style>\n</head>\n<body>', body]
    if data is not None:
        payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
        parts.append(f'<script type="application/json" id="page-data">{payload}</script>')
    parts.append(f"<script>\n{''.join((WEB / script).read_text() for script in scripts)}</script>\n</body>\n</html>\n")
    return "\n".join(parts)


def table(head: Sequence[str], rows: Iterable[Sequence[str]], attributes: str = "") -> str:
    """A table of HTML cells: ``head`` holds whole ``<th>`` elements, each row whole ``<td>`` elements."""
    body = "\n".join(f"<tr>{''.join(cells)}</tr>" for cells in rows)
    return f"<table {attributes}>\n<thead><tr>{''.join(head)}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def text_head(label: str) -> str:
    return f'<th class="text">{escape(label)}</th>'


def text_cell(value: Any) -> str:
    return f'<td class="text">{escape(value)}</td>'


def metric_head(metric: Metric) -> str:
    """A metric's column head: its label and arrow, its description on hover."""
    return (f'<th title="{escape(metric.description)}" data-key="{metric.key}">'
            f"{escape(metric.label + metric.arrow)}</th>")


def number(value: Optional[float], digits: int = 2) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def best_values(results: Mapping[str, Mapping[str, float]], metrics: Sequence[Metric]) -> dict[str, float]:
    """Per metric, the best value over the rows of ``results`` (its direction from the declaration)."""
    best = {}
    for metric in metrics:
        values = [r[metric.key] for r in results.values() if r.get(metric.key) is not None]
        if values:
            best[metric.key] = max(values) if metric.higher_is_better else min(values)
    return best


def present_metrics(results: Iterable[Mapping[str, Any]], declared: Sequence[Metric]) -> list[Metric]:
    """The declared metrics that some result holds, in declaration order (the pointing games need masks)."""
    results = list(results)
    return [metric for metric in declared if any(metric.key in r for r in results)]


def metric_data(metrics: Sequence[Metric]) -> list[dict]:
    """What a page's script knows of each metric: key, label, arrow, direction, scale."""
    return [{"key": m.key, "label": m.label, "arrow": m.arrow, "higher": m.higher_is_better, "scale": m.scale}
            for m in metrics]


def card_table(card: Mapping[str, Any]) -> str:
    """A protocol card, flattened to ``key.sub: value`` rows."""
    rows = [[text_cell(key), text_cell(value)] for key, value in _flatten(card)]
    return table([text_head("entry"), text_head("value")], rows, 'class="card"')


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, Mapping):
        return [row for key, item in value.items() for row in _flatten(item, f"{prefix}{key}.")]
    if isinstance(value, (list, tuple)):
        value = ", ".join(map(str, value))
    return [(prefix[:-1], "" if value is None else str(value))]
