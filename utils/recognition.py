"""Classification and saliency generation (the logic behind ``recognition_imagenet.py``).

One pass over the evaluated images (a seeded ``--fraction`` of the list, or ``--indexes``): top-1 / top-5
predictions and, with ``--salient``, one map per image and method for one target class per image (the label,
or the prediction with ``--pred``). Under torchrun / SLURM every rank takes every world_size-th batch; rank 0
gathers predictions and maps in dataset order and writes everything, so the files equal a single process's:

    <store_dir>/predictions.csv        index,image,label,prediction,confidence,top5,target (dataset order)
    <store_dir>/classification.json    accuracies, per-class accuracy, subset, protocol, localisation
    <store_dir>/saliency_<method>.npz  maps (N, h, w) at native resolution, rows aligned with predictions.csv
    <store_dir>/overlays.png           the first --n_overlays images with each method's map

When the images have object masks (the built-in dataset, or any ``<root>/images`` with a sibling
``<root>/masks``), the report gets a ``localization`` section: per method, the pointing-game hit rate and the
energy pointing game, against masks put through the same evaluation geometry as the images.
"""
from __future__ import annotations

import argparse
import contextlib
from collections import Counter
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from models import CONFIG_NAME

from .checkpoint import ensure_writable_dir
from .cli import load_trained_model
from .data import MASKS_DIRNAME, build_dataset, check_indexes, load_mask, subset_indices, transform_mask
from .distributed import cleanup_distributed, gather_in_order, gather_tensors_in_order, setup_distributed, shard_indices
from .metrics import energy_pointing_game, pointing_game
from .report import (
    evaluation_identity,
    maps_path,
    preprocessing_card,
    save_maps,
    save_overlay_grid,
    save_report,
    write_csv,
)
from .saliency import (
    AttentionMaps,
    RandomMap,
    SaliencyMethod,
    canonical_name,
    create_saliency,
    normalize_maps,
    reduce_attention,
)

PREDICTION_FIELDS = ("index", "image", "label", "prediction", "confidence", "top5", "target")
CLASS_SOURCES = {False: "gt", True: "pred"}  # the --pred flag -> the class_source of utils.metrics' protocols
DEFAULT_IMSIZE = 224
_MASK_CHUNK = 256  # masks scored this many at a time (bool imsize x imsize each)


# --------------------------------------------------------------------------------------------------
# flags -> evaluated rows, methods, model


def parse_indexes(values: Optional[Sequence[str]]) -> Optional[list[int]]:
    """``--indexes``: integers, or one path to a file of integers (separated by spaces, commas or lines;
    ``#`` starts a comment). Returns them sorted without duplicates, or None when not given."""
    if not values:
        return None
    values = [str(v) for v in values]
    if len(values) == 1 and not _is_int(values[0]):
        path = Path(values[0])
        if not path.is_file():
            raise ValueError(f"--indexes: '{values[0]}' is neither an integer nor a file of integers")
        text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
        values = text.replace(",", " ").split()
        if not values:
            raise ValueError(f"--indexes: {path} lists no index")
        for value in values:
            if not _is_int(value):
                raise ValueError(f"--indexes: {path} holds '{value}', not an integer")
    bad = [v for v in values if not _is_int(v)]
    if bad:
        raise ValueError(f"--indexes: '{bad[0]}' is not an integer")
    return sorted({int(v) for v in values})


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def evaluated_indices(n: int, fraction: float, seed: int, indexes: Optional[Sequence[int]] = None) -> list[int]:
    """Dataset rows to evaluate, in dataset order: ``indexes`` (else every row), then a seeded ``fraction``."""
    if indexes is not None:
        check_indexes(indexes, n)
        candidates = sorted(set(int(i) for i in indexes))
    else:
        candidates = list(range(n))
    if not candidates:
        raise ValueError("the evaluated set is empty (the list file has no image)")
    return [candidates[i] for i in subset_indices(len(candidates), fraction, seed)]


def method_names(methods: Sequence[str]) -> list[str]:
    """Registry names for ``--method`` (aliases resolved, duplicates dropped); one line for an unknown name."""
    return list(dict.fromkeys(canonical_name(name) for name in methods))


def _is_own_method(name: str) -> bool:
    return name == "random" or name.startswith("attention")


def build_methods(model: torch.nn.Module, names: Sequence[str], engine: str, seed: int) -> dict[str, SaliencyMethod]:
    methods = {}
    for name in names:
        kwargs: dict[str, Any] = {"seed": seed} if name == "random" else {}
        # --engine chooses how CAMs run; the stream's attention and the random baseline have one engine only.
        methods[name] = create_saliency(name, model, engine="auto" if _is_own_method(name) else engine, **kwargs)
    return methods


def default_store_dir(state_root: Optional[str], model: Optional[str]) -> Path:
    """``Evaluation/<run folder name>`` (a weights file: its folder's name when it has a config.json)."""
    if state_root is None:
        return Path("Evaluation") / (model or "model")
    root = Path(state_root)
    if root.is_dir():
        return Path("Evaluation") / root.resolve().name
    if (root.parent / CONFIG_NAME).is_file():
        return Path("Evaluation") / root.resolve().parent.name
    return Path("Evaluation") / root.stem


# --------------------------------------------------------------------------------------------------
# the pass over the data


def shard_batches(indices: Sequence[int], batch_size: int, rank: int, world_size: int) -> list[int]:
    """This rank's rows: whole batches of the single-process run (``shard_indices`` over the batch list).

    Every image is then computed in the same batch, at the same position, as in a single process, so the
    gathered output is bitwise the single-process output: CPU kernels (oneDNN) give results that depend on
    the batch size and on the position in the batch at the 1e-6 level, which a sharding by image would expose.
    """
    batches = [list(indices[start:start + batch_size]) for start in range(0, len(indices), batch_size)]
    return [index for batch in shard_indices(batches, rank, world_size) for index in batch]


def _random_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0])


def compute_maps(method: SaliencyMethod, images: torch.Tensor, targets: torch.Tensor, indices: Sequence[int],
                 seed: int = 0, attentions: Optional[Sequence[torch.Tensor]] = None) -> torch.Tensor:
    """Maps of one batch. The random baseline is drawn per image from (seed, dataset index), so that its maps
    do not depend on batching or sharding. ``attentions``: the stream's attention of ``images`` from the
    classification forward, which the attention methods then reuse instead of running the model again."""
    if isinstance(method, AttentionMaps) and attentions is not None:
        return normalize_maps(reduce_attention(attentions, method.reduction))
    if isinstance(method, RandomMap):
        maps = []
        for row, index in enumerate(indices):
            method.generator.manual_seed(_random_seed(seed, int(index)))
            maps.append(method(images[row:row + 1], targets[row:row + 1]))
        return torch.cat(maps)
    return method(images, targets)


def _progress(iterable, enabled: bool, **kwargs):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, **kwargs)


def evaluate_shard(model, dataset, indices: Sequence[int], methods: dict[str, SaliencyMethod], device: torch.device,
                   batch_size: int, workers: int, use_prediction: bool, seed: int, progress: bool
                   ) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Predictions (one dict per row of ``indices``) and maps (N, h, w) per method, on the CPU."""
    loader = DataLoader(Subset(dataset, list(indices)), batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    topk = min(5, model.num_classes)
    rows: list[dict] = []
    maps: dict[str, list[torch.Tensor]] = {name: [] for name in methods}
    share_attention = any(isinstance(method, AttentionMaps) for method in methods.values())
    start = 0
    for images, labels in _progress(loader, progress, desc="recognition", unit="batch"):
        batch_indices = list(indices[start:start + len(labels)])
        start += len(labels)
        images = images.to(device, non_blocking=True)
        labels = labels.to(device)
        attentions = None
        with torch.no_grad():
            if share_attention:  # a CA model's forward computes them anyway
                logits, attentions = model.forward_with_attention(images)
            else:
                logits = model(images)
        logits = logits.float()
        probabilities = logits.softmax(dim=1)
        confidence, prediction = probabilities.max(dim=1)
        top = logits.topk(topk, dim=1).indices
        targets = prediction if use_prediction else labels
        for name, method in methods.items():
            maps[name].append(compute_maps(method, images, targets, batch_indices, seed, attentions).float().cpu())
        for row, index in enumerate(batch_indices):
            rows.append({"index": index, "label": int(labels[row]), "prediction": int(prediction[row]),
                         "confidence": float(confidence[row]), "top5": top[row].tolist(),
                         "target": int(targets[row])})
    stacked = {name: torch.cat(chunks) if chunks else torch.empty(0) for name, chunks in maps.items()}
    return rows, stacked


def _empty_maps_like(model, dataset, index: int, methods: dict[str, SaliencyMethod], device: torch.device
                     ) -> dict[str, torch.Tensor]:
    """(0, h, w) per method for a rank with no image: the gather needs every rank's trailing shape."""
    image, label = dataset[index]
    image = image[None].to(device)
    target = torch.tensor([label], device=device)
    return {name: compute_maps(method, image, target, [index])[:0].float().cpu() for name, method in methods.items()}


# --------------------------------------------------------------------------------------------------
# reports


def _class_name(names: Optional[Sequence[str]], index: int) -> str:
    return names[index] if names is not None and 0 <= index < len(names) else str(index)


def classification_summary(rows: Sequence[dict], num_classes: int, class_names: Optional[Sequence[str]]) -> dict:
    """Top-1 / top-k accuracy (%) and per-class top-1 accuracy from prediction rows."""
    count = len(rows)
    top1 = sum(r["prediction"] == r["label"] for r in rows)
    top5 = sum(r["label"] in r["top5"] for r in rows)
    counts = Counter(r["label"] for r in rows)
    hits = Counter(r["label"] for r in rows if r["prediction"] == r["label"])
    per_class = [{"class": c, "name": _class_name(class_names, c), "count": counts[c],
                  "top1": 100.0 * hits[c] / counts[c]} for c in sorted(counts)]
    return {"top1": 100.0 * top1 / count, "top5": 100.0 * top5 / count, "topk": min(5, num_classes),
            "count": count, "per_class": per_class}


def _mask_root(dataset) -> Optional[Path]:
    root = getattr(dataset, "root", None)
    if root is None or not (Path(root).parent / MASKS_DIRNAME).is_dir():
        return None
    return Path(root).parent


def localization(dataset, indices: Sequence[int], maps: dict[str, torch.Tensor], imsize: int, crop_pct: float,
                 squash: bool, tolerance: float) -> Optional[dict]:
    """Pointing game (hit rate, %) and energy pointing game (%) per method, when every evaluated image has a
    mask (``<root>/masks/<relative path>`` beside ``<root>/images``); None otherwise."""
    root = _mask_root(dataset)
    if root is None or not maps:
        return None
    paths = [dataset.samples[i][0] for i in indices]
    if not all((root / MASKS_DIRNAME / p).is_file() for p in paths):
        return None
    hits = {name: [] for name in maps}
    energy = {name: [] for name in maps}
    area = []
    for start in range(0, len(paths), _MASK_CHUNK):
        chunk = paths[start:start + _MASK_CHUNK]
        masks = torch.stack([transform_mask(load_mask(root, p), imsize, crop_pct, squash) for p in chunk])
        area.append(masks.flatten(1).float().mean(1))
        for name, method_maps in maps.items():
            block = method_maps[start:start + len(chunk)]
            hits[name].append(pointing_game(block, masks, tolerance).float())
            energy[name].append(energy_pointing_game(block, masks).float())
    result: dict[str, Any] = {
        "masks": str(root / MASKS_DIRNAME), "count": len(paths), "tolerance_px": tolerance,
        "mean_mask_area": 100.0 * float(torch.cat(area).mean()),  # a uniformly random point hits this often
        "methods": {},
    }
    for name in maps:
        result["methods"][name] = {"pointing_game": 100.0 * float(torch.cat(hits[name]).mean()),
                                   "energy_pointing_game": 100.0 * float(torch.cat(energy[name]).mean())}
    return result


def _prediction_csv_rows(rows: Sequence[dict], dataset) -> list[dict]:
    return [{"index": r["index"], "image": dataset.samples[r["index"]][0], "label": r["label"],
             "prediction": r["prediction"], "confidence": f"{r['confidence']:.6f}",
             "top5": " ".join(str(c) for c in r["top5"]), "target": r["target"]} for r in rows]


def _write_overlays(path: Path, dataset, rows: Sequence[dict], maps: dict[str, torch.Tensor], count: int,
                    class_names, mean, std) -> Optional[Path]:
    count = min(count, len(rows))
    if count <= 0 or not maps:
        return None
    images = torch.stack([dataset[r["index"]][0] for r in rows[:count]])
    titles = [f"#{r['index']} true {_class_name(class_names, r['label'])}\n"
              f"pred {_class_name(class_names, r['prediction'])} ({100 * r['confidence']:.0f}%)" for r in rows[:count]]
    return save_overlay_grid(path, images, {name: m[:count] for name, m in maps.items()}, titles, mean, std)


# --------------------------------------------------------------------------------------------------
# entry point


def run_recognition(args: argparse.Namespace) -> dict:
    """Runs the evaluation described by the flags of ``recognition_imagenet.py`` and returns the report; rank 0
    alone scores localisation and writes the files. User errors raise ValueError / OSError with one line."""
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.n_overlays < 0:
        raise ValueError(f"--n_overlays must be >= 0, got {args.n_overlays}")
    if args.use_gpu and not torch.cuda.is_available():
        raise ValueError("--use_gpu given but CUDA is not available (leave it out to run on the CPU)")
    if not 0 < args.fraction <= 1:
        raise ValueError(f"--fraction must be in (0, 1], got {args.fraction}")
    # naming a method asks for its maps; --salient alone means the default method
    names = method_names(args.method or ["gradcam"]) if args.salient or args.method else []
    indexes = parse_indexes(args.indexes)
    store_dir = Path(args.store_dir) if args.store_dir else default_store_dir(args.state_root, args.model)
    report_path = Path(args.report) if args.report else store_dir / "classification.json"
    ensure_writable_dir(store_dir, "--store_dir")
    ensure_writable_dir(report_path.parent, "--report")
    model, config = load_trained_model(args.state_root, args.model, args.pool, args.classes, args.heads,
                                       args.pretrained)
    imsize = args.imsize or config.get("imsize") or DEFAULT_IMSIZE
    mean, std = config["mean"], config["std"]
    dataset = build_dataset(args.root_data, args.path_lbl, imsize, train=False, mean=mean, std=std,
                            num_classes=config["classes"], crop_pct=args.crop_pct, squash=args.squash)
    indices = evaluated_indices(len(dataset), args.fraction, args.seed, indexes)
    class_names = config.get("class_names") or dataset.classes
    preprocessing = preprocessing_card(imsize, args.crop_pct, args.squash, mean, std)
    identity = evaluation_identity(model, config, dataset.samples, preprocessing) if names else None

    env, device = setup_distributed(args.use_gpu)
    try:
        model.to(device)
        if args.channels_last:
            model.to(memory_format=torch.channels_last)
        methods = build_methods(model, names, args.engine, args.seed)
        local = shard_batches(indices, args.batch_size, env.rank, env.world_size)
        with contextlib.ExitStack() as hooks:  # every method released, also on errors
            for method in methods.values():
                hooks.enter_context(method)
            rows, maps = evaluate_shard(model, dataset, local, methods, device, args.batch_size, args.workers,
                                        args.pred, args.seed, progress=env.is_main)
            if not local and methods:
                maps = _empty_maps_like(model, dataset, indices[0], methods, device)
        rows = gather_in_order(rows, local, order=indices)
        maps = {name: gather_tensors_in_order(m, local, order=indices) for name, m in maps.items()}
    finally:
        cleanup_distributed()

    report: dict[str, Any] = {
        **classification_summary(rows, config["classes"], class_names),
        "subset": {"dataset_size": len(dataset), "fraction": args.fraction, "seed": args.seed,
                   "indexes": indexes, "evaluated": len(indices)},
        "model": {"state_root": args.state_root, "backbone": config["backbone"], "pool": config["pool"],
                  "heads": config["heads"], "classes": config["classes"], "pretrained": bool(args.pretrained)},
        "data": {"root_data": args.root_data or "built-in dataset", "path_lbl": args.path_lbl,
                 "list": str(getattr(dataset, "list_file", "")) or None, **preprocessing},
        "world_size": env.world_size, "device": device.type, "channels_last": args.channels_last,
        "files": {"predictions": str(store_dir / "predictions.csv"), "report": str(report_path)},
    }
    if methods:
        report["saliency"] = {
            "class_source": CLASS_SOURCES[bool(args.pred)],
            "methods": {name: method.describe() for name, method in methods.items()},
            "shapes": {name: list(m.shape[1:]) for name, m in maps.items()},
        }
        report["files"]["maps"] = {name: str(maps_path(store_dir, name)) for name in methods}
    if env.is_main:
        located = localization(dataset, indices, maps, imsize, args.crop_pct, args.squash, args.pointing_tolerance)
        if located is not None:
            report["localization"] = located
        _write_outputs(args, report, rows, maps, dataset, store_dir, report_path, class_names, identity)
        _print_summary(report, store_dir)
    return report


def _write_outputs(args, report, rows, maps, dataset, store_dir: Path, report_path: Path, class_names,
                   identity: Optional[dict]) -> None:
    write_csv(store_dir / "predictions.csv", _prediction_csv_rows(rows, dataset), PREDICTION_FIELDS)
    indices = [r["index"] for r in rows]
    targets = [r["target"] for r in rows]
    for name, method_maps in maps.items():
        save_maps(store_dir, name, method_maps, indices, targets, CLASS_SOURCES[bool(args.pred)], identity)
    overlays = _write_overlays(store_dir / "overlays.png", dataset, rows, maps, args.n_overlays, class_names,
                               report["data"]["mean"], report["data"]["std"])
    if overlays is not None:
        report["files"]["overlays"] = str(overlays)
    save_report(report_path, report)


def _print_summary(report: dict, store_dir: Path) -> None:
    print(f"top-1 {report['top1']:.2f}%  top-{report['topk']} {report['top5']:.2f}%  on {report['count']} images "
          f"-> {store_dir}")
    for name, scores in report.get("localization", {}).get("methods", {}).items():
        print(f"  {name}: pointing game {scores['pointing_game']:.1f}%  energy {scores['energy_pointing_game']:.1f}% "
              f"(mask area {report['localization']['mean_mask_area']:.1f}%)")


__all__ = ["CLASS_SOURCES", "PREDICTION_FIELDS", "build_methods", "classification_summary", "compute_maps",
           "default_store_dir", "evaluate_shard", "evaluated_indices", "shard_batches", "localization", "method_names",
           "parse_indexes", "run_recognition"]

