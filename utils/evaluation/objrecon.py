"""Interpretability metrics of saliency maps: the pipeline behind ``objrecon_imagenet.py``.

Flow: the model (``--state_root``) and the evaluated dataset -> each method's maps (saliency files of
recognition_imagenet.py, checked against this model and data, or computed) -> the rows and their classes ->
each rank scores its shard batch by batch, every method on the same images, with every metric of
:mod:`utils.faithfulness` -> rank 0 gathers the per-image rows in dataset order and writes metrics.csv,
summary.json (means + the protocol card), the curve plots and report.html (with the gallery's thumbnails, made
on each rank from the images and maps at hand); with --compare also compare.html.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
import sys
import time
from pathlib import Path
from typing import Collection, Optional, Sequence

import torch

from utils.data import MASKS_DIRNAME
from utils.faithfulness import (
    CLASS_SOURCES,
    CURVE_METRICS,
    METRICS,
    EvalProtocol,
    card_differences,
    evaluate_batch,
    format_table,
    get_protocol,
    image_metrics,
    predict,
    summarize,
)
from utils.runtime.distributed import distributed_session, gather_in_order, gather_tensors_in_order
from utils.runtime.forward import ForwardSettings
from utils.runtime.io import ensure_writable_dir
from utils.runtime.layout import EvaluationFolder, library_versions

from .compare_html import write_compare_page
from .masks import load_masks, mask_root
from .methods import build_methods, compute_maps
from .model import default_store_dir
from .plots import save_curve_panels, save_curve_plot
from .report_html import gallery_rows, thumbnails, write_report_page
from .rows import parse_indexes, shard_rows
from .saved_maps import Source, check_sources, resolve_sources, select_rows
from .session import EvaluationData, batches, check_evaluation_flags, forward_settings, load_evaluation

CSV_FIELDS = ("index", "path", "label", "method", "target", "prediction", "p", "o", *(m.key for m in METRICS))


def run(args: argparse.Namespace) -> dict:
    check_evaluation_flags(args)
    if args.report_images < 0:
        raise ValueError(f"--report_images must be >= 0 (0: no report.html), got {args.report_images}")
    began = time.perf_counter()
    folder = EvaluationFolder(args.store_dir or default_store_dir(args.state_root, args.model))
    args.store_dir = str(folder.path)
    ensure_writable_dir(folder.path, "--store_dir")
    other = EvaluationFolder.read_summary(args.compare) if args.compare else None
    sources = resolve_sources(args)
    data = load_evaluation(args)
    notes = check_sources(sources, data.identity())
    rows, targets, class_source = select_rows(args, sources, data)
    protocol = dataclasses.replace(get_protocol(args.protocol), class_source=class_source)
    with distributed_session(args.use_gpu) as (env, device):
        if env.is_main:
            _announce(notes, sources, rows, protocol, args, data, env.world_size)
        forward = forward_settings(args, device)
        forward.prepare_model(data.model, device)
        built = build_methods(data.model, [s.method for s in sources if not s.from_file], args.engine, args.seed,
                              forward)
        for source in sources:
            source.saliency = built.get(source.method)
        masks_at = mask_root(data.dataset, rows)
        shard = shard_rows(rows, args.batch_size, env.rank, env.world_size)
        records, computed = score_shard(data, shard, sources, targets, masks_at, forward, device, protocol, args,
                                        env.is_main, gallery_rows(rows, args.report_images))
        records = gather_in_order(records, [r["index"] for r in records], order=rows)
        saved_maps = {}
        if args.save_maps:
            for method, parts in computed.items():
                # an empty shard still joins the collective, with the method's map size
                local = torch.cat(parts) if parts else torch.zeros(0, *_map_size(sources, method, data, device))
                saved_maps[method] = gather_tensors_in_order(local, shard, order=rows)
    if not env.is_main:
        return {}

    methods = [s.method for s in sources]
    label = args.label or data.config.get("pool", "model")
    results, curves = {}, {}
    for method in methods:
        results[method], curves[method] = summarize([r["methods"][method] for r in records],
                                                    protocol.perturbation_fractions)
    for method, maps in saved_maps.items():
        folder.save_maps(method, maps, rows, [r["methods"][method]["target"] for r in records], class_source,
                         data.identity())
    card = protocol_card(protocol, args, data, rows, sources, masks_at, forward)
    summary = {"label": label, "protocol": card, "results": results, "curves": curves, "class_names": data.class_names,
               "run": {"world_size": env.world_size, "batch_size": args.batch_size,
                       "seconds": round(time.perf_counter() - began, 2), "argv": getattr(args, "argv", None)}}
    if other is not None:
        other.setdefault("label", Path(other["path"]).parent.name)
        if other["label"] == label:
            other["label"] = f"{other['label']} ({Path(other['path']).parent.name})"
        summary["compare"] = {"path": other["path"], "label": other["label"],
                              "differences": card_differences(card, other["protocol"])}
    folder.write_metrics(metrics_rows(records, methods), CSV_FIELDS)
    folder.write_report(folder.summary, summary)
    write_plots(folder, label, curves)
    pages = []
    if args.report_images > 0:
        pages.append(write_report_page(folder, summary, records, data.class_names))
    else:
        folder.remove_report()
    if other is not None and not summary["compare"]["differences"]:
        pages.append(write_compare_page(folder.path, [Path(other["path"]).parent, folder.path],
                                        [other["label"], label]))
    _print_results(summary, other, folder, pages)
    return summary


def _announce(notes: Sequence[str], sources: Sequence[Source], rows: Sequence[int], protocol: EvalProtocol,
              args: argparse.Namespace, data: EvaluationData, world_size: int) -> None:
    for note in notes:
        print(f"warning: {note}", file=sys.stderr, flush=True)
    default_source = get_protocol(args.protocol).class_source
    if protocol.class_source != default_source:
        print(f"note: the {CLASS_SOURCES[protocol.class_source]} class is explained and scored (the saliency file's "
              f"or --class_source), not the {CLASS_SOURCES[default_source]} class of --protocol {args.protocol}",
              flush=True)
    where = ", ".join(f"{s.method} ({'file ' + str(s.path) if s.from_file else 'computed'})" for s in sources)
    print(f"evaluating {len(rows)} images x {len(sources)} method(s): {where}; protocol {protocol.name}, "
          f"{CLASS_SOURCES[protocol.class_source]} class, {data.imsize}px, world size {world_size}", flush=True)


def score_shard(data: EvaluationData, shard: list[int], sources: Sequence[Source], targets: Optional[dict],
                masks_at: Optional[Path], forward: ForwardSettings, device: torch.device, protocol: EvalProtocol,
                args: argparse.Namespace, progress: bool, gallery: Collection[int]
                ) -> tuple[list[dict], dict[str, list[torch.Tensor]]]:
    """Per-row records ``{index, path, label, methods: {method: {metrics..., curves}}}`` of this rank's shard
    (the rows in ``gallery`` also with their report thumbnails), and the computed maps (for ``--save_maps``)."""
    # the classes are decided here (given or predicted), so evaluate_batch is told them ('gt' = use these)
    given = dataclasses.replace(protocol, class_source="gt")
    records: list[dict] = []
    computed: dict[str, list[torch.Tensor]] = {s.method: [] for s in sources if not s.from_file}
    for rows, images, labels in batches(data.dataset, shard, args.batch_size, args.workers, forward, device,
                                        "objrecon", progress):
        if targets is not None:
            batch_targets = torch.tensor([targets[i] for i in rows])
        else:  # the model's own (fp32) prediction: --amp and --channels_last are speed knobs, not a class choice
            batch_targets = predict(data.model, images, ForwardSettings(chunk=args.batch_size))
        masks = None
        if masks_at is not None:
            masks = load_masks(masks_at, data.dataset, rows, data.imsize, data.crop_pct, data.squash)
        batch_records = [{"index": i, "path": data.dataset.samples[i][0], "label": int(label), "methods": {}}
                         for i, label in zip(rows, labels.tolist())]
        batch_maps = {}
        for source in sources:
            if source.from_file:
                maps = source.batch_maps(rows)
            else:
                maps = compute_maps(source.saliency, images, batch_targets.to(device), rows, args.seed).float().cpu()
                computed[source.method].append(maps)
            batch_maps[source.method] = maps
            out = evaluate_batch(data.model, images, maps, batch_targets, data.mean, data.std, given, forward,
                                 masks=masks)
            for k, record in enumerate(batch_records):
                record["methods"][source.method] = image_metrics(out, k)
        for k, record in enumerate(batch_records):
            if record["index"] in gallery:
                record["thumbnails"] = thumbnails(images[k], {method: maps[k] for method, maps in batch_maps.items()},
                                                  data.mean, data.std)
        records.extend(batch_records)
    return records, computed


def _map_size(sources: Sequence[Source], method: str, data: EvaluationData, device: torch.device
              ) -> tuple[int, int]:
    """Native map size of a computed method, from one image (only needed by a rank with an empty shard)."""
    source = next(s for s in sources if s.method == method)
    image, label = data.dataset[0]
    return tuple(compute_maps(source.saliency, image[None].to(device), torch.tensor([label], device=device), [0]
                              ).shape[1:])


def indices_hash(rows: Sequence[int]) -> str:
    return hashlib.sha256(",".join(map(str, rows)).encode()).hexdigest()[:16]


def protocol_card(protocol: EvalProtocol, args: argparse.Namespace, data: EvaluationData, rows: Sequence[int],
                  sources: Sequence[Source], masks_at: Optional[Path], forward: ForwardSettings) -> dict:
    """Everything the numbers depend on: the protocol, the data subset and preprocessing, the maps' sources, the
    model, the precision and the library versions."""
    imsize = data.imsize
    return {
        **protocol.to_dict(),
        "step_pixels": protocol.step_pixels(imsize, imsize),
        "steps": math.ceil(imsize * imsize / protocol.step_pixels(imsize, imsize)),
        "image_size": imsize,
        "num_images": len(rows),
        "class_source_description": CLASS_SOURCES[protocol.class_source] + " class (scored and explained)",
        "data": {
            "root_data": str(args.root_data) if args.root_data else f"built-in dataset ({data.dataset.root})",
            "list_file": str(getattr(data.dataset, "list_file", None) or ""),
            "dataset_images": len(data.dataset),
            "fraction": args.fraction, "indexes": parse_indexes(args.indexes), "seed": args.seed,
            "indices_sha256": indices_hash(rows),
            "preprocessing": data.preprocessing,
            "masks": str(masks_at / MASKS_DIRNAME) if masks_at else None,
        },
        "saliency": {s.method: s.card() for s in sources},
        "model": {"state_root": args.state_root,
                  **{k: data.config.get(k) for k in ("backbone", "pool", "classes", "heads")}},
        "precision": {"amp": forward.amp, "channels_last": forward.channels_last, "device": str(forward.device)},
        "versions": library_versions(),
    }


def metrics_rows(records: Sequence[dict], methods: Sequence[str]) -> list[dict]:
    return [{"index": record["index"], "path": record["path"], "label": record["label"], "method": method,
             **{key: record["methods"][method].get(key, "") for key in CSV_FIELDS[4:]}}
            for method in methods for record in records]


def write_plots(folder: EvaluationFolder, label: str, curves: dict) -> None:
    for method, pair in curves.items():
        save_curve_plot(folder.curves(method), pair, f"{label}: {method}, mean insertion / deletion")
    save_curve_panels(folder.curves("methods"),
                      {key: {method: pair[key] for method, pair in curves.items()} for key in CURVE_METRICS},
                      f"{label}: methods")


def _print_results(summary: dict, other: Optional[dict], folder: EvaluationFolder, pages: Sequence[Path]) -> None:
    table = {summary["label"]: summary["results"]}
    if other is not None:
        table = {other["label"]: other["results"], **table}
    print(format_table(table))
    if other is not None and summary["compare"]["differences"]:
        print(f"note: {other['path']} differs in {', '.join(summary['compare']['differences'])}: not directly "
              f"comparable (no {folder.COMPARE} written)")
    print(f"wrote {folder.metrics}, {folder.summary} and {folder.CURVES_PREFIX}*.png "
          f"({summary['run']['seconds']:.1f} s)")
    for path in pages:
        print(f"open {path}")
