"""Classification and saliency generation: the pipeline behind ``recognition_imagenet.py``.

One pass over the evaluated images (a seeded ``--fraction`` of the list, or ``--indexes``): top-1 / top-5
predictions and, for every ``--method``, one map per image for one target class per image (the label, or the
prediction with ``--pred``). The backbone runs once per batch: the fast gradient CAMs and the stream's attention
reuse the classification forward. Under torchrun / SLURM every rank takes every world_size-th batch; rank 0
gathers predictions and maps in dataset order and writes the evaluation folder (``utils.runtime.layout``), so the
files equal a single process's. Where the images have object masks, the report gets the pointing games.
"""
from __future__ import annotations

import argparse
import contextlib
from collections import Counter
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from utils.data import MASKS_DIRNAME, class_name
from utils.explain import FastGradientCAM, SaliencyMethod
from utils.faithfulness import energy_pointing_game, metric, pointing_game
from utils.runtime.distributed import distributed_session, gather_in_order, gather_tensors_in_order
from utils.runtime.forward import ForwardSettings
from utils.runtime.io import ensure_writable_dir
from utils.runtime.layout import EvaluationFolder

from .masks import load_masks, mask_root
from .methods import build_methods, compute_maps, method_names
from .model import default_store_dir
from .plots import save_overlay_grid
from .rows import evaluated_indices, parse_indexes, shard_rows
from .session import EvaluationData, batches, check_evaluation_flags, forward_settings, load_evaluation

PREDICTION_FIELDS = ("index", "image", "label", "prediction", "confidence", "top5", "target")
_MASK_CHUNK = 256  # masks scored this many at a time (bool imsize x imsize each)


def run(args: argparse.Namespace) -> dict:
    """Runs the evaluation described by the flags of ``recognition_imagenet.py`` and returns the report; rank 0
    alone scores localisation and writes the files. User errors raise ValueError / OSError with one line."""
    check_evaluation_flags(args)
    if args.n_overlays < 0:
        raise ValueError(f"--n_overlays must be >= 0, got {args.n_overlays}")
    # naming a method asks for its maps; --salient alone means the default method
    names = method_names(args.method or ["gradcam"]) if args.salient or args.method else []
    indexes = parse_indexes(args.indexes)
    folder = EvaluationFolder(args.store_dir or default_store_dir(args.state_root, args.model))
    report_path = Path(args.report) if args.report else folder.classification
    ensure_writable_dir(folder.path, "--store_dir")
    ensure_writable_dir(report_path.parent, "--report")
    data = load_evaluation(args, pretrained=args.pretrained)
    indices = evaluated_indices(len(data.dataset), args.fraction, args.seed, indexes)
    identity = data.identity() if names else None
    class_source = "pred" if args.pred else "gt"

    with distributed_session(args.use_gpu) as (env, device):
        forward = forward_settings(args, device)
        forward.prepare_model(data.model, device)
        methods = build_methods(data.model, names, args.engine, args.seed, forward)
        local = shard_rows(indices, args.batch_size, env.rank, env.world_size)
        with contextlib.ExitStack() as hooks:  # every method released, also on errors
            for method in methods.values():
                hooks.enter_context(method)
            rows, maps = classify_and_explain(data, local, methods, forward, device, args, env.is_main)
            if not local and methods:  # the gather needs every rank's map size
                maps = _empty_maps_like(data, indices[0], methods, device)
        rows = gather_in_order(rows, local, order=indices)
        maps = {name: gather_tensors_in_order(m, local, order=indices) for name, m in maps.items()}

    report: dict[str, Any] = {
        **classification_summary(rows, data.config["classes"], data.class_names),
        "subset": {"dataset_size": len(data.dataset), "fraction": args.fraction, "seed": args.seed,
                   "indexes": indexes, "evaluated": len(indices)},
        "model": {"state_root": args.state_root, "backbone": data.config["backbone"], "pool": data.config["pool"],
                  "heads": data.config["heads"], "classes": data.config["classes"],
                  "pretrained": bool(args.pretrained)},
        "data": {"root_data": args.root_data or "built-in dataset", "path_lbl": args.path_lbl,
                 "list": str(getattr(data.dataset, "list_file", "")) or None, **data.preprocessing},
        "world_size": env.world_size, "device": device.type, "amp": args.amp, "channels_last": args.channels_last,
        "files": {"predictions": str(folder.predictions), "report": str(report_path)},
    }
    if methods:
        report["saliency"] = {
            "class_source": class_source,
            "methods": {name: method.describe() for name, method in methods.items()},
            "shapes": {name: list(m.shape[1:]) for name, m in maps.items()},
        }
        report["files"]["maps"] = {name: str(folder.maps(name)) for name in methods}
    if env.is_main:
        located = localization(data, indices, maps, args.pointing_tolerance)
        if located is not None:
            report["localization"] = located
        _write_outputs(folder, report_path, report, data, rows, maps, args.n_overlays, class_source, identity)
        _print_summary(report, folder.path)
    return report


def classify_and_explain(data: EvaluationData, rows: Sequence[int], methods: dict[str, SaliencyMethod],
                         forward: ForwardSettings, device: torch.device, args: argparse.Namespace, progress: bool
                         ) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Predictions (one dict per row) and maps (N, h, w) per method, on the CPU. The feature maps and attention
    of the classification forward feed the methods that can reuse them."""
    model = data.model
    topk = min(5, model.num_classes)
    predictions: list[dict] = []
    maps: dict[str, list[torch.Tensor]] = {name: [] for name in methods}
    for batch_rows, images, labels in batches(data.dataset, rows, args.batch_size, args.workers, forward, device,
                                              "recognition", progress):
        labels = labels.to(device)
        with torch.no_grad(), forward.autocast(device):
            feature_maps = model.forward_feature_maps(images)
            logits, attentions = model.forward_head(feature_maps)
        logits = logits.float()
        confidence, prediction = logits.softmax(dim=1).max(dim=1)
        top = logits.topk(topk, dim=1).indices
        targets = prediction if args.pred else labels
        for name, method in methods.items():
            reused = feature_maps if isinstance(method, FastGradientCAM) else None
            maps[name].append(compute_maps(method, images, targets, batch_rows, args.seed, reused,
                                           attentions).float().cpu())
        for k, index in enumerate(batch_rows):
            predictions.append({"index": index, "label": int(labels[k]), "prediction": int(prediction[k]),
                                "confidence": float(confidence[k]), "top5": top[k].tolist(),
                                "target": int(targets[k])})
    return predictions, {name: torch.cat(chunks) if chunks else torch.empty(0) for name, chunks in maps.items()}


def _empty_maps_like(data: EvaluationData, index: int, methods: dict[str, SaliencyMethod], device: torch.device
                     ) -> dict[str, torch.Tensor]:
    """(0, h, w) per method for a rank with no image."""
    image, label = data.dataset[index]
    image = image[None].to(device)
    target = torch.tensor([label], device=device)
    return {name: compute_maps(method, image, target, [index])[:0].float().cpu() for name, method in methods.items()}


def classification_summary(rows: Sequence[dict], num_classes: int, class_names: Optional[Sequence[str]]) -> dict:
    """Top-1 / top-k accuracy (%) and per-class top-1 accuracy from prediction rows."""
    count = len(rows)
    top1 = sum(r["prediction"] == r["label"] for r in rows)
    top5 = sum(r["label"] in r["top5"] for r in rows)
    counts = Counter(r["label"] for r in rows)
    hits = Counter(r["label"] for r in rows if r["prediction"] == r["label"])
    per_class = [{"class": c, "name": class_name(class_names, c), "count": counts[c],
                  "top1": 100.0 * hits[c] / counts[c]} for c in sorted(counts)]
    return {"top1": 100.0 * top1 / count, "top5": 100.0 * top5 / count, "topk": min(5, num_classes),
            "count": count, "per_class": per_class}


def localization(data: EvaluationData, indices: Sequence[int], maps: dict[str, torch.Tensor], tolerance: float
                 ) -> Optional[dict]:
    """The pointing games (x their scale, %) per method, when every evaluated image has an object mask."""
    root = mask_root(data.dataset, indices)
    if root is None or not maps:
        return None
    games = (metric("pointing_game"), metric("energy_pointing_game"))
    scores: dict[str, dict[str, list[torch.Tensor]]] = {name: {m.key: [] for m in games} for name in maps}
    area = []
    for start in range(0, len(indices), _MASK_CHUNK):
        chunk = indices[start:start + _MASK_CHUNK]
        masks = load_masks(root, data.dataset, chunk, data.imsize, data.crop_pct, data.squash)
        area.append(masks.flatten(1).float().mean(1))
        for name, method_maps in maps.items():
            block = method_maps[start:start + len(chunk)]
            scores[name]["pointing_game"].append(pointing_game(block, masks, tolerance))
            scores[name]["energy_pointing_game"].append(energy_pointing_game(block, masks))
    return {
        "masks": str(root / MASKS_DIRNAME), "count": len(indices), "tolerance_px": tolerance,
        "mean_mask_area": 100.0 * float(torch.cat(area).mean()),  # a uniformly random point hits this often
        "methods": {name: {m.key: m.summarize(torch.cat(per_game[m.key]).double().tolist()) for m in games}
                    for name, per_game in scores.items()},
    }


def _write_outputs(folder: EvaluationFolder, report_path: Path, report: dict, data: EvaluationData,
                   rows: Sequence[dict], maps: dict[str, torch.Tensor], n_overlays: int, class_source: str,
                   identity: Optional[dict]) -> None:
    folder.write_predictions([{"index": r["index"], "image": data.dataset.samples[r["index"]][0],
                               "label": r["label"], "prediction": r["prediction"],
                               "confidence": f"{r['confidence']:.6f}", "top5": " ".join(str(c) for c in r["top5"]),
                               "target": r["target"]} for r in rows], PREDICTION_FIELDS)
    indices = [r["index"] for r in rows]
    targets = [r["target"] for r in rows]
    for name, method_maps in maps.items():
        folder.save_maps(name, method_maps, indices, targets, class_source, identity)
    count = min(n_overlays, len(rows))
    if count > 0 and maps:
        images = torch.stack([data.dataset[r["index"]][0] for r in rows[:count]])
        titles = [f"#{r['index']} true {class_name(data.class_names, r['label'])}\n"
                  f"pred {class_name(data.class_names, r['prediction'])} ({100 * r['confidence']:.0f}%)"
                  for r in rows[:count]]
        save_overlay_grid(folder.overlays, images, {name: m[:count] for name, m in maps.items()}, titles, data.mean,
                          data.std)
        report["files"]["overlays"] = str(folder.overlays)
    folder.write_report(report_path, report)


def _print_summary(report: dict, store_dir: Path) -> None:
    print(f"top-1 {report['top1']:.2f}%  top-{report['topk']} {report['top5']:.2f}%  on {report['count']} images "
          f"-> {store_dir}")
    for name, scores in report.get("localization", {}).get("methods", {}).items():
        print(f"  {name}: pointing game {scores['pointing_game']:.1f}%  energy {scores['energy_pointing_game']:.1f}% "
              f"(mask area {report['localization']['mean_mask_area']:.1f}%)")

