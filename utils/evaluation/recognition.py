"""Classification and saliency generation: the pipeline behind ``recognition_imagenet.py``.

One pass over the evaluated images (a seeded ``--fraction`` of the list, or ``--indexes``): top-1 / top-5
predictions and, for every ``--method``, one map per image for one target class per image (the label, or the
prediction with ``--pred``). A multi-label model (:mod:`.task`) gets a sigmoid score per class, mAP and per-class AP,
and one map per image-class pair: every class present, or with ``--pred`` the classes above a threshold or the top
k. The backbone runs once per batch: the fast gradient CAMs and the stream's attention reuse the classification
forward. The work is committed in shards of whole batches (:mod:`.shards`: ``--resume`` continues a killed run);
under torchrun / SLURM every rank takes every world_size-th pending shard, and rank 0 assembles predictions and maps
from the committed shards in dataset order and writes the evaluation folder (``utils.runtime.layout``), so the files
equal a single process's. Where the images have object masks (or boxes), the report gets the pointing games.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch

from utils.data import DIFFICULT, PRESENT, class_name
from utils.explain import BatchContext, SaliencyMethod
from utils.faithfulness import (
    CALIBRATION_DEFINITION,
    MEAN_AP,
    NUM_PAIRS,
    VOC_AP,
    check_ap_definition,
    class_average_precision,
    describe_ap,
    expected_calibration_error,
    localization_metrics,
    mean_average_precision,
    sigmoid_calibration,
)
from utils.reports.plots import save_overlay_grid
from utils.runtime.distributed import detect_environment, distributed_session
from utils.runtime.forward import ForwardSettings, check_device
from utils.runtime.io import StreamedArray, ensure_writable_dir
from utils.runtime.layout import EvaluationFolder
from utils.task import Task

from .methods import build_methods, method_names, reused
from .model import default_store_dir
from .pairs import Pair, pair_key, select
from .results import RecognitionResult, path_text
from .session import EvaluationData, batches, load_evaluation, store_dir_lock
from .settings import EvaluatedData, RecognitionSettings, tolerance_px
from .shards import ShardStore, evaluation_fingerprint, maps_key, plan_shards, wait_for_every_rank

PREDICTION_FIELDS = ("index", "image", "label", "prediction", "confidence", "nll", "top5", "target")
# multi-label: the classes present, those with only difficult instances, those explained, then a score per class
MULTI_LABEL_FIELDS = ("index", "image", "labels", "difficult", "explained")
SCORE_PREFIX = "score_"
_MASK_CHUNK = 256  # masks scored this many at a time (bool imsize x imsize each)
SCRIPT = "recognition"  # the name of its shards' folder


def recognise(settings: RecognitionSettings) -> RecognitionResult:
    """Runs the evaluation ``settings`` describe (the flags of ``recognition_imagenet.py``) and returns its report
    and files; rank 0 alone scores localisation and writes the files. The work is committed in shards
    (:mod:`.shards`), from which ``settings.resume`` continues. User errors raise ValueError / OSError with one
    line. ``--store_dir`` is locked for the run's life (:func:`.session.store_dir_lock`)."""
    with store_dir_lock(settings):
        return _recognise(settings)


def _recognise(settings: RecognitionSettings) -> RecognitionResult:
    """The work of :func:`recognise`, its ``--store_dir`` locked."""
    check_device(settings.use_gpu, settings.forward.amp)
    check_ap_definition(settings.ap)
    names = method_names(settings.saliency.methods or [])
    trained, evaluated, subset = settings.model, settings.data, settings.data.subset
    folder = EvaluationFolder(settings.store_dir or default_store_dir(trained.state_root, trained.choice.name))
    report_path = Path(settings.report) if settings.report else folder.classification
    ensure_writable_dir(folder.path, "--store_dir")
    ensure_writable_dir(report_path.parent, "--report")
    data = load_evaluation(trained, evaluated, settings.saliency)
    tolerance = tolerance_px(settings.pointing_tolerance, data.task.multi_label)
    indices = subset.rows(len(data.dataset))
    identity = data.identity()
    class_source = settings.saliency.class_source or "gt"
    store = ShardStore(folder.shards(SCRIPT), plan_shards(indices, evaluated.batch_size, settings.shard_batches),
                       fingerprint(settings, data, names, indices, class_source))
    pending = store.pending(settings.resume, detect_environment().rank)

    with distributed_session(settings.use_gpu) as (env, device):
        if env.is_main:
            folder.remove_stale_temporaries()
        forward = dataclasses.replace(settings.forward, device=device)
        forward.prepare_model(data.model, device)
        methods = build_methods(data.model, names, settings.saliency.engine, forward)
        mine = pending[env.rank::env.world_size]
        with contextlib.ExitStack() as hooks:  # every method released, also on errors
            for method in methods.values():
                hooks.enter_context(method)
            commit_shards(store, mine, data, methods, forward, device, evaluated, class_source, env.is_main)
        wait_for_every_rank()
        rows, shard_pairs = read_shards(store)
        shapes = {name: list(store.array(0, maps_key(position)).shape[1:]) for position, name in enumerate(methods)}
        wait_for_every_rank()  # every rank has read the shards before rank 0 removes them
    pairs = [pair for chunk in shard_pairs for pair in chunk]

    if data.task.multi_label:
        summary = multilabel_summary(rows, data.class_names, data.config["classes"], settings.ap)
    else:
        summary = classification_summary(rows, data.config["classes"], data.class_names)
    report: dict[str, Any] = {
        **summary,
        "subset": {"dataset_size": len(data.dataset), "fraction": subset.fraction, "seed": subset.seed,
                   "indexes": subset.index_list, "evaluated": len(indices)},
        "model": {"state_root": path_text(trained.state_root), "backbone": data.config["backbone"],
                  "pool": data.config["pool"], "heads": data.config["heads"], "classes": data.config["classes"],
                  "pretrained": bool(trained.choice.pretrained), "task": data.task.kind},
        "data": {"root_data": path_text(evaluated.root) or "built-in dataset", "path_lbl": path_text(evaluated.listing),
                 "list": str(getattr(data.dataset, "list_file", "")) or None, **data.preprocessing},
        "world_size": env.world_size, "device": device.type, "amp": forward.amp, "channels_last": forward.channels_last,
        "files": {"predictions": str(folder.predictions), "report": str(report_path)},
    }
    if methods:
        report["saliency"] = {
            "class_source": class_source,
            "explained": data.task.describe_selection(class_source),
            NUM_PAIRS: len(pairs),
            "methods": {name: method.describe() for name, method in methods.items()},
            "shapes": shapes,
        }
        report["files"]["maps"] = {name: str(folder.maps(name)) for name in methods}
    if env.is_main:
        located = localization(data, store, shard_pairs, list(methods), tolerance)
        if located is not None:
            report["localization"] = located
        _write_outputs(folder, report_path, report, data, rows, store, pairs, shapes, settings.n_overlays,
                       class_source, identity)
        store.remove()
        _print_summary(report, folder.path)
    return RecognitionResult(report, folder.path, report_path)


def fingerprint(settings: RecognitionSettings, data: EvaluationData, names: Sequence[str], indices: Sequence[int],
                class_source: str) -> dict[str, Any]:
    """What a recognition shard depends on, by the flag (or quantity) that sets it: a resumed run must match."""
    saliency = settings.saliency
    return {**evaluation_fingerprint(data, indices, settings.data, settings.shard_batches, settings.forward,
                                     settings.use_gpu),
            "--method": list(names), "--engine": saliency.engine, "explained class (--pred)": class_source,
            "--pred_threshold": saliency.pred_threshold, "--pred_topk": saliency.pred_topk}


def commit_shards(store: ShardStore, shards: Sequence[int], data: EvaluationData, methods: dict[str, SaliencyMethod],
                  forward: ForwardSettings, device: torch.device, evaluated: EvaluatedData, class_source: str,
                  progress: bool) -> None:
    """Classifies and explains the rows of ``shards`` (one pass over their batches) and commits each shard: its
    predictions, its explained pairs in ascending order and their maps (P, h, w) per method, on the CPU."""
    for k, batch_results in store.by_shard(shards, evaluated.batch_size, lambda rows: classify_and_explain(
            data, rows, methods, forward, device, evaluated, class_source, progress)):
        predictions, pairs, maps = [], [], {name: [] for name in methods}
        for batch_predictions, batch_pairs, batch_maps in batch_results:
            predictions += batch_predictions
            pairs += batch_pairs
            for name, chunk in batch_maps.items():
                maps[name].append(chunk)
        if pairs or not methods:
            stacked = {name: torch.cat(chunks) for name, chunks in maps.items()}
        else:  # no class of the shard explained (multi-label --pred): (0, h, w) maps keep the map size
            stacked = _empty_maps_like(data, store.plan[k][0], methods, device)
        order = sorted(range(len(pairs)), key=lambda i: pair_key(pairs[i], data.config["classes"]))
        arrays = {maps_key(position): stacked[name][order].numpy() for position, name in enumerate(methods)}
        store.commit(k, {"predictions": predictions},
                     {"pairs": np.asarray([pairs[i] for i in order], dtype=np.int64).reshape(-1, 2), **arrays})


def read_shards(store: ShardStore) -> tuple[list[dict], list[list[Pair]]]:
    """The prediction rows of every shard, in dataset order, and each shard's explained pairs."""
    rows: list[dict] = []
    pairs: list[list[Pair]] = []
    for k in range(len(store)):
        rows += store.content(k)["predictions"]
        pairs.append([(int(row), int(label)) for row, label in store.array(k, "pairs")])
    return rows, pairs


def classify_and_explain(data: EvaluationData, rows: Sequence[int], methods: dict[str, SaliencyMethod],
                         forward: ForwardSettings, device: torch.device, evaluated: EvaluatedData, class_source: str,
                         progress: bool) -> Iterator[tuple[list[dict], list[Pair], dict[str, torch.Tensor]]]:
    """For every batch of ``rows``: its predictions (one dict per row), the explained (row, class) pairs and their
    maps (P, h, w) per method, on the CPU. The feature maps and attention of the classification forward feed the
    methods that can reuse them."""
    model, task = data.model, data.task
    topk = min(5, model.num_classes)
    kept = reused(methods)
    for batch_rows, images, labels in batches(data.dataset, rows, evaluated.batch_size, evaluated.workers, forward,
                                              device, "recognition", progress):
        labels = labels.to(device)
        with torch.no_grad(), forward.autocast(device):
            feature_maps = model.forward_feature_maps(images)
            logits, attentions = model.forward_head(feature_maps)
        logits = logits.float()
        _check_finite_logits(logits, batch_rows)
        explained = task.explained(labels, logits, class_source)
        positions = [position for position, _ in explained]
        targets = torch.tensor([label for _, label in explained], dtype=torch.long, device=device)
        pairs = [(batch_rows[position], label) for position, label in explained]
        maps: dict[str, torch.Tensor] = {}
        if explained and methods:  # multi-label --pred: maybe no class of the batch passed the threshold
            context = BatchContext(
                [batch_rows[p] for p in positions], evaluated.subset.seed,
                [select(f, positions) for f in feature_maps] if "feature_maps" in kept else None,
                [select(a, positions) for a in attentions] if "attentions" in kept else None)
            pair_images = select(images, positions)
            for name, method in methods.items():
                maps[name] = method.explain_batch(pair_images, targets, context).float().cpu()
        predictions: list[dict] = []
        if task.multi_label:
            scores = task.scores(logits)
            for k, index in enumerate(batch_rows):
                predictions.append({"index": index, "labels": labels[k].tolist(), "scores": scores[k].tolist(),
                                    "logits": logits[k].tolist(),
                                    "explained": [label for position, label in explained if position == k]})
            yield predictions, pairs, maps
            continue
        confidence, prediction = logits.softmax(dim=1).max(dim=1)
        nll = torch.nn.functional.cross_entropy(logits.double(), labels, reduction="none")
        top = logits.topk(topk, dim=1).indices
        for k, index in enumerate(batch_rows):
            predictions.append({"index": index, "label": int(labels[k]), "prediction": int(prediction[k]),
                                "confidence": float(confidence[k]), "nll": float(nll[k]), "top5": top[k].tolist(),
                                "target": int(targets[k])})
        yield predictions, pairs, maps


def _check_finite_logits(logits: torch.Tensor, rows: Sequence[int]) -> None:
    finite = torch.isfinite(logits).all(dim=1)
    if not bool(finite.all()):
        row = rows[int((~finite).nonzero()[0])]
        raise ValueError(f"dataset row {row}: the model's logits are NaN or inf; its weights or inputs are not finite "
                         f"(a diverged training?)")


def _empty_maps_like(data: EvaluationData, index: int, methods: dict[str, SaliencyMethod], device: torch.device
                     ) -> dict[str, torch.Tensor]:
    """(0, h, w) per method for a rank with no image (the map size does not depend on the class)."""
    image = data.dataset[index][0][None].to(device)
    target = torch.tensor([0], device=device)
    context = BatchContext([index])
    return {name: method.explain_batch(image, target, context)[:0].float().cpu() for name, method in methods.items()}


def classification_summary(rows: Sequence[dict], num_classes: int, class_names: Optional[Sequence[str]]) -> dict:
    """Top-1 / top-k accuracy (%) and per-class top-1 accuracy from prediction rows."""
    count = len(rows)
    top1 = sum(r["prediction"] == r["label"] for r in rows)
    top5 = sum(r["label"] in r["top5"] for r in rows)
    counts = Counter(r["label"] for r in rows)
    hits = Counter(r["label"] for r in rows if r["prediction"] == r["label"])
    per_class = [{"class": c, "name": class_name(class_names, c), "count": counts[c],
                  "top1": 100.0 * hits[c] / counts[c]} for c in sorted(counts)]
    ece = expected_calibration_error([r["confidence"] for r in rows], [r["prediction"] == r["label"] for r in rows])
    return {"top1": 100.0 * top1 / count, "top5": 100.0 * top5 / count, "topk": min(5, num_classes),
            "count": count, "nll": float(np.mean([r["nll"] for r in rows])), "ece": ece,
            "calibration": CALIBRATION_DEFINITION, "per_class": per_class}


def multilabel_summary(rows: Sequence[dict], class_names: Optional[Sequence[str]], num_classes: int,
                       ap_definition: str = VOC_AP) -> dict:
    """mAP and the AP of every class (%, by ``ap_definition``), with each class's positive and difficult-only
    images."""
    logits = np.asarray([r["logits"] for r in rows], dtype=np.float64).reshape(len(rows), num_classes)
    labels = np.asarray([r["labels"] for r in rows]).reshape(len(rows), num_classes)
    class_ap = [None if ap is None else MEAN_AP.scale * ap
                for ap in class_average_precision(logits, labels, ap_definition)]
    per_class = [{"class": c, "name": class_name(class_names, c), "positives": int((labels[:, c] == PRESENT).sum()),
                  "difficult": int((labels[:, c] == DIFFICULT).sum()), "ap": class_ap[c]} for c in range(num_classes)]
    return {MEAN_AP.key: mean_average_precision(class_ap), "count": len(rows), "class_score": "sigmoid",
            "ap": ap_definition, "ap_definition": describe_ap(ap_definition),
            **sigmoid_calibration(logits, labels),
            "calibration": CALIBRATION_DEFINITION, "per_class": per_class}


def localization(data: EvaluationData, store: ShardStore, shard_pairs: Sequence[Sequence[Pair]],
                 names: Sequence[str], tolerance: float) -> Optional[dict]:
    """The localisation metrics (the pointing games and any other registered
    :class:`~utils.faithfulness.LocalizationMetric`, x their scale, %) per method, when every evaluated image has an
    object mask (or boxes: then the explained class's boxes, within ``tolerance`` pixels); the maps are read from
    the committed shards, one shard at a time."""
    masks = data.dataset.object_masks(sorted({row for pairs in shard_pairs for row, _ in pairs}))
    if masks is None or not names:
        return None
    games = localization_metrics()
    scores: dict[str, dict[str, list[torch.Tensor]]] = {name: {m.key: [] for m in games} for name in names}
    area = []
    for k, pairs in enumerate(shard_pairs):
        if not pairs:
            continue
        maps = {name: torch.from_numpy(store.array(k, maps_key(position))) for position, name in enumerate(names)}
        for start in range(0, len(pairs), _MASK_CHUNK):
            chunk = pairs[start:start + _MASK_CHUNK]
            block_masks = masks.load([row for row, _ in chunk], [label for _, label in chunk], data.imsize,
                                     data.crop_pct, data.squash)
            area.append(block_masks.flatten(1).float().mean(1))
            for name, method_maps in maps.items():
                block = method_maps[start:start + len(chunk)]
                for game in games:
                    scores[name][game.key].append(game.localize(block, block_masks, tolerance))
    count = sum(len(pairs) for pairs in shard_pairs)
    return {
        "masks": masks.origin, "count": count, "tolerance_px": tolerance,
        "mean_mask_area": 100.0 * float(torch.cat(area).mean()) if area else math.nan,
        "methods": {name: {m.key: m.summarize(m.per_image({m.key: torch.cat(per_game[m.key])}).double().tolist())
                           for m in games}
                    for name, per_game in scores.items()},
    }


def _prediction_fields(task: Task, class_names: Sequence[str]) -> tuple[str, ...]:
    if not task.multi_label:
        return PREDICTION_FIELDS
    return (*MULTI_LABEL_FIELDS, *(f"{SCORE_PREFIX}{name}" for name in class_names))


def _prediction_row(row: dict, data: EvaluationData, class_names: Sequence[str]) -> dict:
    image = data.dataset.samples[row["index"]][0]
    if not data.task.multi_label:
        return {"index": row["index"], "image": image, "label": row["label"], "prediction": row["prediction"],
                "confidence": f"{row['confidence']:.6f}", "nll": f"{row['nll']:.6f}",
                "top5": " ".join(str(c) for c in row["top5"]),
                "target": row["target"]}
    flagged = {flag: " ".join(str(c) for c, value in enumerate(row["labels"]) if value == flag)
               for flag in (PRESENT, DIFFICULT)}
    return {"index": row["index"], "image": image, "labels": flagged[PRESENT], "difficult": flagged[DIFFICULT],
            "explained": " ".join(map(str, row["explained"])),
            **{f"{SCORE_PREFIX}{name}": f"{score:.6f}" for name, score in zip(class_names, row["scores"])}}


def _write_outputs(folder: EvaluationFolder, report_path: Path, report: dict, data: EvaluationData,
                   rows: Sequence[dict], store: ShardStore, pairs: Sequence[Pair], shapes: dict[str, list[int]],
                   n_overlays: int, class_source: str, identity: Optional[dict]) -> None:
    class_names = [class_name(data.class_names, c) for c in range(data.config["classes"])]
    folder.write_predictions([_prediction_row(r, data, class_names) for r in rows],
                             _prediction_fields(data.task, class_names))
    indices, targets = [row for row, _ in pairs], [label for _, label in pairs]
    for position, (name, shape) in enumerate(shapes.items()):
        maps = StreamedArray(np.float32, (len(pairs), *shape), store.arrays(maps_key(position)))
        folder.save_maps(name, maps, indices, targets, class_source, identity)
    count = min(n_overlays, len(pairs))
    if count > 0 and shapes:
        by_index = {r["index"]: r for r in rows}
        images = torch.stack([data.dataset[row][0] for row, _ in pairs[:count]])
        titles = [_overlay_title(by_index[row], label, data) for row, label in pairs[:count]]
        save_overlay_grid(folder.overlays, images, {name: _first_maps(store, position, count)
                                                    for position, name in enumerate(shapes)},
                          titles, data.mean, data.std)
        report["files"]["overlays"] = str(folder.overlays)
    folder.write_report(report_path, report)


def _first_maps(store: ShardStore, position: int, count: int) -> torch.Tensor:
    """The first ``count`` maps of a method, from as many shards as they take."""
    chunks, held = [], 0
    for chunk in store.arrays(maps_key(position)):
        if held >= count:
            break
        chunks.append(torch.from_numpy(chunk[:count - held]))
        held += len(chunks[-1])
    return torch.cat(chunks)


def _overlay_title(row: dict, label: int, data: EvaluationData) -> str:
    if data.task.multi_label:
        present = ", ".join(class_name(data.class_names, c) for c, flag in enumerate(row["labels"]) if flag == PRESENT)
        return f"#{row['index']} {present}\n{class_name(data.class_names, label)} ({100 * row['scores'][label]:.0f}%)"
    return (f"#{row['index']} true {class_name(data.class_names, row['label'])}\n"
            f"pred {class_name(data.class_names, row['prediction'])} ({100 * row['confidence']:.0f}%)")


def _print_summary(report: dict, store_dir: Path) -> None:
    if MEAN_AP.key in report:
        print(f"{MEAN_AP.label} {report[MEAN_AP.key]:.2f}% on {report['count']} images -> {store_dir}")
    else:
        print(f"top-1 {report['top1']:.2f}%  top-{report['topk']} {report['top5']:.2f}%  on {report['count']} images "
              f"-> {store_dir}")
    for name, scores in report.get("localization", {}).get("methods", {}).items():
        print(f"  {name}: pointing game {scores['pointing_game']:.1f}%  energy {scores['energy_pointing_game']:.1f}% "
              f"(mask area {report['localization']['mean_mask_area']:.1f}%)")
