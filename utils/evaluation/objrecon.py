"""Interpretability metrics of saliency maps: the pipeline behind ``objrecon_imagenet.py``.

Flow: the model (``--state_root``) and the evaluated dataset -> each method's maps (saliency files of
recognition_imagenet.py, checked against this model and data, or computed) -> the rows and their classes ->
the rows are cut into shards of whole batches (:mod:`.shards`), dealt to the ranks, each scored batch by batch,
every method on the same images, with every metric of :mod:`utils.faithfulness`, and committed (``--resume``
continues a killed run from them) -> rank 0 reads the per-image rows of the shards in dataset order and writes
metrics.csv, summary.json (means + the protocol card), the curve plots and report.html (with the gallery's
thumbnails, made on each rank from the images and maps at hand); with --compare also compare.html. A multi-label model
(:mod:`.task`) is scored per image-class pair with the class's sigmoid; its summaries average over the pairs and
over the pairs of each class.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import sys
import time
from pathlib import Path
from typing import Collection, Iterator, Optional, Sequence

import numpy as np
import torch

from utils.data import PRESENT, ObjectMasks
from utils.explain import BatchContext
from utils.faithfulness import (
    CLASS_SOURCES,
    CURVE_METRICS,
    METRIC_KEYS,
    NUM_IMAGES,
    NUM_PAIRS,
    PER_CLASS,
    EvalProtocol,
    card_differences,
    evaluate_batch,
    format_table,
    get_protocol,
    image_metrics,
    summarize,
)
from utils.reports.compare import write_compare_page
from utils.reports.plots import save_curve_panels, save_curve_plot
from utils.reports.report import gallery_rows, thumbnails, write_report_page
from utils.runtime.distributed import detect_environment, distributed_session
from utils.runtime.forward import ForwardSettings, check_device
from utils.runtime.io import StreamedArray, ensure_writable_dir
from utils.runtime.layout import EvaluationFolder, library_versions

from .methods import build_methods
from .model import default_store_dir
from .pairs import pair_key, select
from .results import EvaluationResult, path_text
from .saved_maps import Source, check_sources, resolve_sources, select_rows
from .session import EvaluationData, batches, load_evaluation, store_dir_lock
from .settings import EvaluatedData, EvaluationSettings, TrainedModel, tolerance_px
from .shards import ShardStore, evaluation_fingerprint, maps_key, plan_shards, rows_digest, wait_for_every_rank

ROW_FIELDS = ("index", "path", "label", "method", "target", "prediction", "p", "o")
SCRIPT = "objrecon"  # the name of its shards' folder
_HASH_CHUNK = 1024  # maps hashed at a time


def csv_fields() -> tuple[str, ...]:
    """metrics.csv's columns: the row's image, method, classes and scores, then every registered metric."""
    return (*ROW_FIELDS, *METRIC_KEYS)


def evaluate(settings: EvaluationSettings) -> Optional[EvaluationResult]:
    """Scores the maps ``settings`` describe (the flags of ``objrecon_imagenet.py``) and returns the summary and
    files that rank 0 wrote (None on the other ranks of a distributed run). User errors raise ValueError / OSError
    with one line. ``--store_dir`` is locked for the run's life (:func:`.session.store_dir_lock`)."""
    with store_dir_lock(settings):
        return _evaluate(settings)


def _evaluate(settings: EvaluationSettings) -> Optional[EvaluationResult]:
    """The work of :func:`evaluate`, its ``--store_dir`` locked."""
    check_device(settings.use_gpu, settings.forward.amp)
    began = time.perf_counter()
    trained, evaluated = settings.model, settings.data
    folder = EvaluationFolder(settings.store_dir or default_store_dir(trained.state_root, trained.choice.name))
    ensure_writable_dir(folder.path, "--store_dir")
    other = EvaluationFolder.read_summary(settings.compare) if settings.compare else None
    saliency = settings.saliency
    sources = resolve_sources(folder, settings.saliency_dir, saliency.methods, settings.compute)
    data = load_evaluation(trained, evaluated, saliency)
    notes = check_sources(sources, data.identity())
    rows, targets, class_source = select_rows(evaluated.subset, saliency.class_source, settings.protocol, sources,
                                              data)
    protocol = dataclasses.replace(get_protocol(settings.protocol), class_source=class_source,
                                   class_score=data.task.class_score,
                                   pointing_tolerance=tolerance_px(settings.pointing_tolerance, data.task.multi_label))
    gallery = gallery_rows(rows, settings.report_images)
    store = ShardStore(folder.shards(SCRIPT), plan_shards(rows, evaluated.batch_size, settings.shard_batches),
                       fingerprint(settings, data, sources, rows, targets, protocol))
    pending = store.pending(settings.resume, detect_environment().rank)
    with distributed_session(settings.use_gpu) as (env, device):
        if env.is_main:
            folder.remove_stale_temporaries()
            _announce(notes, sources, rows, protocol, settings.protocol, data, env.world_size)
        forward = dataclasses.replace(settings.forward, device=device)
        forward.prepare_model(data.model, device)
        built = build_methods(data.model, [s.method for s in sources if not s.from_file], saliency.engine,
                              forward)
        for source in sources:
            source.saliency = built.get(source.method)
        masks = data.dataset.object_masks(rows)
        commit_shards(store, pending[env.rank::env.world_size], data, sources, targets, masks, forward, device,
                      protocol, evaluated, env.is_main, gallery, settings.save_maps)
        wait_for_every_rank()
    if not env.is_main:
        return None

    records = [record for k in range(len(store)) for record in store.content(k)["records"]]
    saved_maps = {}
    if settings.save_maps:
        for position, source in enumerate(s for s in sources if not s.from_file):
            shape = store.array(0, maps_key(position)).shape[1:]
            saved_maps[source.method] = StreamedArray(np.float32, (len(records), *shape),
                                                      store.arrays(maps_key(position)))
    methods = [s.method for s in sources]
    label = settings.label or data.config.get("pool", "model")
    results, curves = {}, {}
    for method in methods:
        results[method], curves[method] = summarize([r["methods"][method] for r in records],
                                                    protocol.perturbation_fractions)
        if data.task.multi_label:
            results[method].update(_pair_counts(records), **{PER_CLASS: per_class(records, method, data, protocol)})
    for method, maps in saved_maps.items():
        folder.save_maps(method, maps, [r["index"] for r in records], [r["target"] for r in records], class_source,
                         data.identity())
    card = protocol_card(protocol, trained, evaluated, data, rows, sources, masks, forward, records)
    summary = {"label": label, "protocol": card, "results": results, "curves": curves, "class_names": data.class_names,
               "run": {"world_size": env.world_size, "batch_size": evaluated.batch_size,
                       "shards": {"count": len(store), "resumed": len(store) - len(pending)},
                       "seconds": round(time.perf_counter() - began, 2),
                       "argv": None if settings.argv is None else list(settings.argv)}}
    if other is not None:
        other.setdefault("label", Path(other["path"]).parent.name)
        if other["label"] == label:
            other["label"] = f"{other['label']} ({Path(other['path']).parent.name})"
        summary["compare"] = {"path": other["path"], "label": other["label"],
                              "differences": card_differences(card, other["protocol"])}
    folder.write_metrics(metrics_rows(records, methods), csv_fields())
    folder.write_report(folder.summary, summary)
    write_plots(folder, label, curves)
    report_page = compare_page = None
    if settings.report_images > 0:
        report_page = write_report_page(folder, summary, records, data.class_names)
    else:
        folder.remove_report()
    if other is not None and not summary["compare"]["differences"]:
        compare_page = write_compare_page(folder.path, [Path(other["path"]).parent, folder.path],
                                          [other["label"], label])
    store.remove()
    _print_results(summary, other, folder, [page for page in (report_page, compare_page) if page is not None])
    return EvaluationResult(summary, folder.path, report_page, compare_page,
                            {method: folder.maps(method) for method in saved_maps})


def _announce(notes: Sequence[str], sources: Sequence[Source], rows: Sequence[int], protocol: EvalProtocol,
              preset: str, data: EvaluationData, world_size: int) -> None:
    for note in notes:
        print(f"warning: {note}", file=sys.stderr, flush=True)
    default_source = get_protocol(preset).class_source
    if protocol.class_source != default_source:
        print(f"note: the {CLASS_SOURCES[protocol.class_source]} class is explained and scored (the saliency file's "
              f"or --class_source), not the {CLASS_SOURCES[default_source]} class of --protocol {preset}",
              flush=True)
    where = ", ".join(f"{s.method} ({'file ' + str(s.path) if s.from_file else 'computed'})" for s in sources)
    print(f"evaluating {len(rows)} images x {len(sources)} method(s): {where}; protocol {protocol.name}, "
          f"{CLASS_SOURCES[protocol.class_source]} class, {data.imsize}px, world size {world_size}", flush=True)


def fingerprint(settings: EvaluationSettings, data: EvaluationData, sources: Sequence[Source], rows: Sequence[int],
                targets: Optional[dict[int, list[int]]], protocol: EvalProtocol) -> dict:
    """What an objrecon shard depends on, by the flag (or quantity) that sets it: a resumed run must match."""
    return {**evaluation_fingerprint(data, rows, settings.data, settings.shard_batches, settings.forward,
                                     settings.use_gpu),
            "explained classes": "predicted" if targets is None else
                                 rows_digest([(row, *targets[row]) for row in rows]),
            "--method": [f"{s.method} ({_maps_digest(s) if s.from_file else 'computed'})" for s in sources],
            "--engine": settings.saliency.engine, "--protocol": protocol.to_dict(),
            "--report_images": settings.report_images, "--save_maps": settings.save_maps}


def _maps_digest(source: Source) -> str:
    """A saliency file's maps and pairs, hashed: a file regenerated since the shards were committed is another."""
    digest = hashlib.sha256()
    for start in range(0, len(source.maps), _HASH_CHUNK):  # a chunk at a time: the file's maps may be memory-mapped
        digest.update(source.maps[start:start + _HASH_CHUNK].contiguous().numpy().tobytes())
    digest.update(repr(sorted(source.pairs.items())).encode())
    return f"file {digest.hexdigest()[:16]}"


def commit_shards(store: ShardStore, shards: Sequence[int], data: EvaluationData, sources: Sequence[Source],
                  targets: Optional[dict[int, list[int]]], masks: Optional[ObjectMasks], forward: ForwardSettings,
                  device: torch.device, protocol: EvalProtocol, evaluated: EvaluatedData, progress: bool,
                  gallery: Collection[int], save_maps: bool) -> None:
    """Scores the rows of ``shards`` (one pass over their batches) and commits each shard: its records (see
    :func:`score_batches`) in ascending (row, class) order and, with ``save_maps``, the computed maps."""
    computed = [s for s in sources if not s.from_file] if save_maps else []
    for k, batch_results in store.by_shard(shards, evaluated.batch_size, lambda rows: score_batches(
            data, rows, sources, targets, masks, forward, device, protocol, evaluated, progress, gallery)):
        records: list[dict] = []
        maps: dict[str, list[torch.Tensor]] = {s.method: [] for s in computed}
        for batch_records, batch_maps in batch_results:
            records += batch_records
            for source in computed:
                if source.method in batch_maps:
                    maps[source.method].append(batch_maps[source.method])
        order = sorted(range(len(records)), key=lambda i: pair_key((records[i]["index"], records[i]["target"]),
                                                                   data.config["classes"]))
        arrays = {}
        for position, source in enumerate(computed):
            chunks = maps[source.method]
            # a shard without pairs still records the method's map size
            stacked = torch.cat(chunks) if chunks else torch.zeros(0, *_map_size(sources, source.method, data, device))
            arrays[maps_key(position)] = stacked[order].numpy()
        store.commit(k, {"records": [records[i] for i in order]}, arrays)


def score_batches(data: EvaluationData, shard: list[int], sources: Sequence[Source],
                  targets: Optional[dict[int, list[int]]], masks: Optional[ObjectMasks], forward: ForwardSettings,
                  device: torch.device, protocol: EvalProtocol, evaluated: EvaluatedData, progress: bool,
                  gallery: Collection[int]) -> Iterator[tuple[list[dict], dict[str, torch.Tensor]]]:
    """For every batch of ``shard``: per-pair records ``{index, path, label, target, methods: {method: {metrics...,
    curves}}}`` (one pair per image for single-label models; the pairs of the images in ``gallery`` also with their
    report thumbnails), and the computed maps (for ``--save_maps``)."""
    # the classes are decided here (given or predicted), so evaluate_batch is told them ('gt' = use these)
    given = dataclasses.replace(protocol, class_source="gt")
    task = data.task
    for rows, images, labels in batches(data.dataset, shard, evaluated.batch_size, evaluated.workers, forward, device,
                                        "objrecon", progress):
        if targets is not None:
            explained = [(k, label) for k, row in enumerate(rows) for label in targets[row]]
        else:  # the model's own (fp32) prediction: --amp and --channels_last are speed knobs, not a class choice
            explained = task.explained(labels, ForwardSettings(chunk=forward.chunk).logits(data.model, images),
                                       "pred")
        if not explained:
            yield [], {}
            continue
        positions = [k for k, _ in explained]
        pair_rows = [rows[k] for k in positions]
        classes = torch.tensor([label for _, label in explained])
        pair_images = select(images, positions)
        pair_masks = None if masks is None else masks.load(pair_rows, classes.tolist(), data.imsize, data.crop_pct,
                                                             data.squash)
        batch_records = [{"index": row, "path": data.dataset.samples[row][0], "label": _label_text(labels[k], task),
                          "target": int(label), "methods": {}} for row, (k, label) in zip(pair_rows, explained)]
        batch_maps, computed = {}, {}
        for source in sources:
            if source.from_file:
                maps = source.batch_maps(list(zip(pair_rows, classes.tolist())))
            else:
                maps = source.saliency.explain_batch(pair_images, classes.to(device),
                                                     BatchContext(pair_rows, evaluated.subset.seed)).float().cpu()
                computed[source.method] = maps
            batch_maps[source.method] = maps
            out = evaluate_batch(data.model, pair_images, maps, classes, data.mean, data.std, given, forward,
                                 masks=pair_masks)
            for k, record in enumerate(batch_records):
                record["methods"][source.method] = image_metrics(out, k)
        for k, record in enumerate(batch_records):
            if record["index"] in gallery:
                pair_maps = {method: maps[k] for method, maps in batch_maps.items()}
                record["thumbnails"] = thumbnails(pair_images[k], pair_maps, data.mean, data.std)
        yield batch_records, computed


def _label_text(label: torch.Tensor, task) -> object:
    """metrics.csv's label: the class index, or the classes present (space-separated) for a multi-label model."""
    if not task.multi_label:
        return int(label)
    return " ".join(str(c) for c, flag in enumerate(label.tolist()) if flag == PRESENT)


def _pair_counts(records: Sequence[dict]) -> dict:
    return {NUM_PAIRS: len(records), NUM_IMAGES: len({r["index"] for r in records})}


def per_class(records: Sequence[dict], method: str, data: EvaluationData, protocol: EvalProtocol) -> dict:
    """The means of every metric over the pairs of each explained class, by class name."""
    names = data.class_names or [str(c) for c in range(data.config["classes"])]
    by_class: dict[int, list[dict]] = {}
    for record in records:
        by_class.setdefault(record["target"], []).append(record)
    return {names[label]: {**summarize([r["methods"][method] for r in group], protocol.perturbation_fractions)[0],
                           **_pair_counts(group)}
            for label, group in sorted(by_class.items())}


def _map_size(sources: Sequence[Source], method: str, data: EvaluationData, device: torch.device
              ) -> tuple[int, int]:
    """Native map size of a computed method, from one image (only needed by a rank with an empty shard; the size
    does not depend on the class)."""
    source = next(s for s in sources if s.method == method)
    image = data.dataset[0][0]
    return tuple(source.saliency.explain_batch(image[None].to(device), torch.tensor([0], device=device),
                                               BatchContext([0])).shape[1:])


def protocol_card(protocol: EvalProtocol, trained: TrainedModel, evaluated: EvaluatedData, data: EvaluationData,
                  rows: Sequence[int], sources: Sequence[Source], masks: Optional[ObjectMasks],
                  forward: ForwardSettings, records: Sequence[dict]) -> dict:
    """Everything the numbers depend on: the protocol, the data subset and preprocessing, the maps' sources, the
    model, the precision and the library versions."""
    imsize = data.imsize
    multi_label = {
        "task": data.task.kind, NUM_PAIRS: len(records),
        "explained": data.task.describe_selection(protocol.class_source),
        "aggregation": "mean over image-class pairs; per class: mean over the pairs of the class",
    } if data.task.multi_label else {"task": data.task.kind}
    return {
        **protocol.to_dict(),
        **multi_label,
        "step_pixels": protocol.step_pixels(imsize, imsize),
        "steps": math.ceil(imsize * imsize / protocol.step_pixels(imsize, imsize)),
        "image_size": imsize,
        "num_images": len(rows),
        "class_source_description": CLASS_SOURCES[protocol.class_source] + " class (scored and explained)",
        "data": {
            "root_data": path_text(evaluated.root) or f"built-in dataset ({data.dataset.root})",
            "list_file": str(getattr(data.dataset, "list_file", None) or ""),
            "dataset_images": len(data.dataset),
            "fraction": evaluated.subset.fraction, "indexes": evaluated.subset.index_list,
            "seed": evaluated.subset.seed,
            "indices_sha256": rows_digest(rows),
            "preprocessing": data.preprocessing,
            "masks": masks.origin if masks else None,
        },
        "saliency": {s.method: s.card() for s in sources},
        "model": {"state_root": path_text(trained.state_root),
                  **{k: data.config.get(k) for k in ("backbone", "pool", "classes", "heads")}},
        "precision": {"amp": forward.amp, "channels_last": forward.channels_last, "device": str(forward.device)},
        "versions": library_versions(),
    }


def metrics_rows(records: Sequence[dict], methods: Sequence[str]) -> list[dict]:
    return [{"index": record["index"], "path": record["path"], "label": record["label"], "method": method,
             **{key: record["methods"][method].get(key, "") for key in csv_fields()[4:]}}
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
