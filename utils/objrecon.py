"""The interpretability evaluation behind ``objrecon_imagenet.py``: saliency maps (read from the files of
``recognition_imagenet.py --salient`` or computed here) scored with every metric of :mod:`utils.metrics`,
per image and on average, with the protocol card that makes the numbers comparable.

Flow: rebuild the model (``--state_root``) -> the evaluation dataset (``--root_data``/``--path_lbl``, else the
built-in validation set) -> the rows to evaluate and their classes (a saliency file's ``indices`` and
``targets``, else ``--fraction``/``--indexes`` and the class source) -> each rank evaluates its shard of the
rows batch by batch (every method on the same images) -> rank 0 gathers the per-image rows in dataset order
and writes ``metrics.csv``, ``summary.json`` and the curve plots.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from .checkpoint import ensure_writable_dir
from .cli import (
    add_config_argument,
    add_evaluation_data_arguments,
    add_trained_model_arguments,
    error_line,
    load_trained_model,
    parse_args,
)
from .data import IMAGES_DIRNAME, MASKS_DIRNAME, build_dataset, load_mask, subset_indices, transform_mask
from .metrics import PROTOCOLS, energy_pointing_game, evaluate_batch, get_protocol, pointing_game, predict
from .recognition import build_methods, compute_maps, default_store_dir, evaluated_indices, method_names, parse_indexes
from .report import (
    MAPS_PREFIX,
    degenerate_maps_note,
    evaluation_identity,
    identity_mismatch,
    library_versions,
    load_maps,
    maps_path,
    preprocessing_card,
    save_curve_panels,
    save_curve_plot,
    save_maps,
    save_report,
    write_csv,
)

DEFAULT_METHOD = "gradcam"
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16}
SUMMARY_NAME = "summary.json"
METRICS_NAME = "metrics.csv"
# per-image columns averaged into the summary (x100: every one is a fraction or a 0/1 outcome)
METRIC_KEYS = ("ad", "ai", "ag", "insertion", "deletion", "positive_perturbation", "negative_perturbation",
               "pointing_game", "energy_pointing_game")
CSV_FIELDS = ("index", "path", "label", "method", "target", "p", "o", *METRIC_KEYS)
TABLE = (("AD", "ad", "down"), ("AI", "ai", "up"), ("AG", "ag", "up"), ("Ins", "insertion", "up"),
         ("Del", "deletion", "down"), ("+Pert", "positive_perturbation", "down"),
         ("-Pert", "negative_perturbation", "up"), ("PG", "pointing_game", "up"),
         ("EPG", "energy_pointing_game", "up"))


# --------------------------------------------------------------------------------------------
# Flags

def build_parser(description: Optional[str] = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description or __doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(parser)

    ev = parser.add_argument_group("Evaluation settings")
    ev.add_argument("--use_gpu", action="store_true", help="evaluate on CUDA (cuda:LOCAL_RANK under torchrun/SLURM)")
    ev.add_argument("--store_dir", default=None,
                    help="where metrics.csv, summary.json and the plots go (default: Evaluation/<run folder name>, "
                         "as recognition_imagenet.py)")
    ev.add_argument("--saliency_dir", default=None,
                    help="folder with recognition_imagenet.py's saliency_<method>.npz (default: --store_dir; "
                         "when given, every --method must have its file there unless --compute)")
    ev.add_argument("--method", nargs="+", default=None,
                    help="saliency methods (e.g. gradcam gradcam++ scorecam attention); each is read from its "
                         "saved file when there is one, else computed. Default: every saliency_*.npz found")
    ev.add_argument("--compute", action="store_true",
                    help=f"compute the maps even when saved files exist (default method: {DEFAULT_METHOD})")
    ev.add_argument("--engine", choices=("auto", "fast", "package"), default="auto",
                    help="saliency engine when computing (see utils/saliency.py)")
    ev.add_argument("--save_maps", action="store_true",
                    help="also write computed maps as STORE_DIR/saliency_<method>.npz (the recognition format)")
    ev.add_argument("--protocol", choices=sorted(PROTOCOLS), default="reference",
                    help="reference: 8 image rows per insertion/deletion step, 5x5 blur, ground-truth class; "
                         "rise: 224 pixels per step, 11x11 blur, predicted class")
    ev.add_argument("--class_source", choices=("gt", "pred"), default=None,
                    help="class to explain and score (default: the protocol's; a saliency file's own when maps "
                         "are read from one)")
    ev.add_argument("--pred", action="store_const", const="pred", dest="class_source",
                    help="same as --class_source pred")
    ev.add_argument("--amp", choices=tuple(AMP_DTYPES), default="none", help="autocast dtype of the metric forwards")
    ev.add_argument("--channels_last", action="store_true", help="NHWC memory format (faster convolutions)")
    ev.add_argument("--label", default=None, help="name of this run in tables and plots (default: its pooling)")
    ev.add_argument("--compare", default=None,
                    help="another objrecon store_dir (or its summary.json), e.g. the GAP run when this is the CA "
                         "run: plotted and tabulated against this one")

    add_evaluation_data_arguments(parser, batch_help="images per batch, also the bound on images x steps "
                                                     "forwarded at once; a chunk that runs out of GPU memory is "
                                                     "split, so on a GPU give the largest you like")
    add_trained_model_arguments(parser)
    return parser


# --------------------------------------------------------------------------------------------
# Saliency sources, rows and classes

@dataclasses.dataclass
class Source:
    """Where one method's maps come from: a saved file (``maps`` + the position of each dataset row) or computed."""
    method: str
    path: Optional[Path] = None
    maps: Optional[torch.Tensor] = None
    rows: Optional[dict[int, int]] = None
    targets: Optional[list[int]] = None
    class_source: Optional[str] = None
    saliency: Any = None                                   # a SaliencyMethod when computed
    identity: Optional[dict] = None                        # the model and data that made a file's maps

    @property
    def from_file(self) -> bool:
        return self.path is not None

    def card(self) -> dict:
        if self.from_file:
            return {"source": "file", "file": str(self.path), "method": self.method, "class_source": self.class_source,
                    "map_size": list(self.maps.shape[1:]), "num_maps": int(self.maps.shape[0])}
        return {"source": "computed", **self.saliency.describe()}


def _file_method(path: Path) -> str:
    return path.name[len(MAPS_PREFIX):-len(".npz")]


def _read_source(method: str, path: Path) -> Source:
    loaded = load_maps(path)
    maps, indices, targets = loaded["maps"], loaded["indices"], loaded["targets"]
    if len(targets) != len(indices):
        raise ValueError(f"{path}: {len(maps)} maps and {len(indices)} dataset rows but {len(targets)} targets")
    bad = (~torch.isfinite(maps.flatten(1)).all(1)).nonzero().flatten()
    if len(bad):
        row = int(bad[0])
        raise ValueError(f"{path}: {len(bad)} map(s) contain NaN or inf (first: file row {row}, dataset row "
                         f"{indices[row]}); regenerate them")
    rows = {int(index): position for position, index in enumerate(indices)}
    if len(rows) != len(indices):
        raise ValueError(f"{path}: a dataset row appears twice in its indices")
    return Source(method=loaded["method"] or method, path=path, maps=maps, rows=rows, targets=[int(t) for t in targets],
                  class_source=loaded["class_source"], identity=loaded["identity"])


def check_sources(sources: Sequence[Source], identity: dict) -> list[str]:
    """Refuses maps made by another model or for other data (one line naming the file and what differs); returns
    warnings for files that cannot be checked or whose maps carry no ranking."""
    notes = []
    for source in sources:
        if not source.from_file:
            continue
        if source.identity is None:
            notes.append(f"{source.path} records no model or data identity (an older version wrote it): not "
                         f"checked against --state_root")
        else:
            differences = identity_mismatch(source.identity, identity)
            if differences:
                raise ValueError(f"{source.path} was made by another model or for other data ({'; '.join(differences)})"
                                 f": regenerate it with recognition_imagenet.py --salient for this --state_root, or "
                                 f"evaluate in another --store_dir")
        degenerate = degenerate_maps_note(source.maps)
        if degenerate:
            notes.append(f"{source.path}: {degenerate}")
    return notes


def resolve_sources(args: argparse.Namespace) -> list[Source]:
    """One :class:`Source` per method: saved files where present (unless ``--compute``), else computed."""
    explicit_dir = args.saliency_dir is not None
    folder = Path(args.saliency_dir if explicit_dir else args.store_dir)
    if args.method is None and not args.compute:
        found = sorted(folder.glob(f"{MAPS_PREFIX}*.npz"))
        if not found:
            raise FileNotFoundError(
                f"no saliency maps in {folder} (looked for {MAPS_PREFIX}<method>.npz): run recognition_imagenet.py "
                f"--salient --store_dir {folder} first, or give --method {DEFAULT_METHOD} [...] to compute them")
        return [_read_source(_file_method(path), path) for path in found]
    methods = method_names(args.method or [DEFAULT_METHOD])
    sources = []
    for method in methods:
        path = maps_path(folder, method)
        if not args.compute and path.is_file():
            sources.append(_read_source(method, path))
        elif not args.compute and explicit_dir:
            raise FileNotFoundError(
                f"saliency file not found: {path} (--saliency_dir {folder}); run recognition_imagenet.py --salient "
                f"--method {method} --store_dir {folder} first, or add --compute to compute the maps here")
        else:
            sources.append(Source(method=method))
    return sources


def select_rows(args: argparse.Namespace, sources: Sequence[Source], num_images: int, labels: Sequence[int]
                ) -> tuple[list[int], Optional[dict[int, int]], str]:
    """The dataset rows to evaluate (ascending), their classes when fixed in advance (None: predicted on the
    fly) and the class source. Rows: a saliency file's (else every row), restricted to ``--indexes``, then a
    seeded ``--fraction`` of them, as recognition_imagenet.py picks them."""
    if not 0 < args.fraction <= 1:
        raise ValueError(f"--fraction must be in (0, 1], got {args.fraction}")
    indexes = parse_indexes(args.indexes)
    files = [s for s in sources if s.from_file]
    protocol_source = get_protocol(args.protocol).class_source
    if files:
        first = files[0]
        for other in files[1:]:
            if set(other.rows) != set(first.rows):
                raise ValueError(f"{other.path} has maps for {len(other.rows)} dataset rows and {first.path} for "
                                 f"{len(first.rows)}, not the same rows: evaluate them separately")
            if other.class_source != first.class_source or any(
                    other.targets[other.rows[i]] != first.targets[first.rows[i]] for i in first.rows):
                raise ValueError(f"{other.path} and {first.path} explain different classes")
        class_source = first.class_source
        if args.class_source is not None and args.class_source != class_source:
            raise ValueError(f"the maps in {first.path} explain the {_source_name(class_source)} class, but "
                             f"--class_source {args.class_source} was asked: regenerate them with the same class "
                             f"source, or add --compute")
        available = sorted(first.rows)
        if not available:
            raise ValueError(f"{first.path} holds no maps")
        for index in available:
            if not 0 <= index < num_images:
                raise ValueError(f"{first.path} has a map for dataset row {index}, but the dataset has {num_images} "
                                 f"images: were the maps made with other --root_data/--path_lbl?")
        if indexes is not None:
            missing = sorted(set(indexes) - set(first.rows))
            if missing:
                raise ValueError(f"--indexes: {len(missing)} rows have no map in {first.path} (first: {missing[:5]})")
            available = indexes
        rows = [available[i] for i in subset_indices(len(available), args.fraction, args.seed)]
        targets = {i: first.targets[first.rows[i]] for i in rows}
        if class_source == "gt":
            wrong = [i for i in rows if targets[i] != labels[i]]
            if wrong:
                raise ValueError(f"{first.path}: the ground-truth class of dataset row {wrong[0]} is "
                                 f"{labels[wrong[0]]} "
                                 f"in the list file but {targets[wrong[0]]} in the maps file ({len(wrong)} rows "
                                 f"differ): were the maps made with another --path_lbl?")
        return rows, targets, class_source
    class_source = args.class_source or protocol_source
    rows = evaluated_indices(num_images, args.fraction, args.seed, indexes)
    targets = {i: int(labels[i]) for i in rows} if class_source == "gt" else None
    return rows, targets, class_source


def _source_name(class_source: str) -> str:
    return {"gt": "ground-truth", "pred": "predicted"}.get(class_source, class_source)


def indices_hash(rows: Sequence[int]) -> str:
    return hashlib.sha256(",".join(map(str, rows)).encode()).hexdigest()[:16]


def _mask_root(dataset) -> Optional[Path]:
    """The dataset root holding ``masks/`` beside ``images/`` (the built-in layout), if any."""
    root = Path(dataset.root)
    if root.name == IMAGES_DIRNAME and (root.parent / MASKS_DIRNAME).is_dir():
        return root.parent
    return None


def _masks_for(dataset, rows: Sequence[int]) -> Optional[Path]:
    root = _mask_root(dataset)
    if root is None or not all((root / MASKS_DIRNAME / dataset.samples[i][0]).is_file() for i in rows):
        return None
    return root


# --------------------------------------------------------------------------------------------
# Evaluation of one shard

def _evaluate_shard(args, model, dataset, shard: list[int], sources: Sequence[Source], targets: Optional[dict],
                    config: dict, imsize: int, mask_root: Optional[Path], device: torch.device, protocol,
                    show_progress: bool) -> tuple[list[dict], dict[str, list[torch.Tensor]]]:
    """Per-row records ``{index, path, label, methods: {method: {metrics..., curves}}}`` of this rank's shard,
    and the computed maps (for ``--save_maps``)."""
    from torch.utils.data import DataLoader, Subset
    from tqdm import tqdm

    mean, std = config["mean"], config["std"]
    amp_dtype = AMP_DTYPES[args.amp]
    # the classes are decided here (given or predicted), so evaluate_batch is told them ('gt' = use these)
    given = dataclasses.replace(protocol, class_source="gt")
    loader = DataLoader(Subset(dataset, shard), batch_size=args.batch_size, shuffle=False, num_workers=args.workers,
                        pin_memory=device.type == "cuda")
    records: list[dict] = []
    computed: dict[str, list[torch.Tensor]] = {s.method: [] for s in sources if not s.from_file}
    start = 0
    bar = tqdm(total=len(shard), desc="objrecon", unit="img", disable=not show_progress, dynamic_ncols=True)
    for images, labels in loader:
        rows = shard[start:start + len(images)]
        start += len(images)
        images = images.to(device, non_blocking=True)
        if args.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if targets is not None:
            batch_targets = torch.tensor([targets[i] for i in rows])
        else:  # the model's own (fp32) prediction: --amp and --channels_last are speed knobs, not a class choice
            batch_targets = predict(model, images, args.batch_size)
        masks = None
        if mask_root is not None:
            masks = torch.stack([transform_mask(load_mask(mask_root, dataset.samples[i][0]), imsize, args.crop_pct,
                                                args.squash) for i in rows])
        batch_records = [{"index": i, "path": dataset.samples[i][0], "label": int(label), "methods": {}}
                         for i, label in zip(rows, labels.tolist())]
        for source in sources:
            if source.from_file:
                maps = source.maps[[source.rows[i] for i in rows]]
            else:
                maps = compute_maps(source.saliency, images, batch_targets.to(device), rows, args.seed).float().cpu()
                computed[source.method].append(maps)
            out = evaluate_batch(model, images, maps, batch_targets, mean, std, given, args.batch_size,
                                 amp_dtype=amp_dtype, channels_last=args.channels_last)
            if masks is not None:
                out["pointing_game"] = pointing_game(maps, masks)
                out["energy_pointing_game"] = energy_pointing_game(maps, masks)
            for k, record in enumerate(batch_records):
                record["methods"][source.method] = _image_metrics(out, k)
        records.extend(batch_records)
        bar.update(len(rows))
    bar.close()
    return records, computed


def _image_metrics(out: dict[str, torch.Tensor], k: int) -> dict:
    metrics = {"target": int(out["target"][k]), "p": float(out["p"][k]), "o": float(out["o"][k]),
               "ad": float(out["ad"][k]), "ai": int(out["ai"][k]), "ag": float(out["ag"][k]),
               "insertion": float(out["insertion_auc"][k]), "deletion": float(out["deletion_auc"][k]),
               # arrays, not lists: compact in memory and in the gather (all_gather_object pickles them)
               "insertion_curve": out["insertion_curve"][k].numpy(),
               "deletion_curve": out["deletion_curve"][k].numpy()}
    for mode in ("positive", "negative"):
        correct = out[f"{mode}_perturbation"][k]
        metrics[f"{mode}_perturbation"] = float(correct.double().mean())
        metrics[f"{mode}_perturbation_curve"] = correct.numpy()
    if "pointing_game" in out:
        metrics["pointing_game"] = int(out["pointing_game"][k])
        metrics["energy_pointing_game"] = float(out["energy_pointing_game"][k])
    return metrics


# --------------------------------------------------------------------------------------------
# Reports

def summarize_records(records: Sequence[dict], methods: Sequence[str], fractions: Sequence[float]
                      ) -> tuple[dict, dict]:
    """Per method: the mean of every metric over images (x100, like the poster) and the mean curves."""
    results, curves = {}, {}
    for method in methods:
        per_image = [r["methods"][method] for r in records]
        summary: dict[str, Any] = {}
        for key in METRIC_KEYS:
            values = [m[key] for m in per_image if key in m]
            if values:
                summary[key] = 100 * float(np.mean(np.asarray(values, dtype=np.float64)))
        summary["p"] = float(np.mean([m["p"] for m in per_image])) if per_image else math.nan
        summary["o"] = float(np.mean([m["o"] for m in per_image])) if per_image else math.nan
        for mode in ("positive", "negative"):
            accuracy = np.stack([m[f"{mode}_perturbation_curve"] for m in per_image]).mean(0, dtype=np.float64) * 100
            summary[f"{mode}_perturbation_accuracy"] = dict(zip(map(str, fractions), accuracy.tolist()))
        summary["num_images"] = len(per_image)
        results[method] = summary
        curves[method] = {mode: np.stack([m[f"{mode}_curve"] for m in per_image]).mean(0, dtype=np.float64).tolist()
                          for mode in ("insertion", "deletion")}
    return results, curves


def metrics_rows(records: Sequence[dict], methods: Sequence[str]) -> list[dict]:
    rows = []
    for method in methods:
        for record in records:
            metrics = record["methods"][method]
            rows.append({"index": record["index"], "path": record["path"], "label": record["label"], "method": method,
                         **{key: metrics.get(key, "") for key in CSV_FIELDS[4:]}})
    return rows


def format_table(results_by_label: dict[str, dict[str, dict]]) -> str:
    """A fixed-width table: one line per (run, method), the metrics in percent (arrows: better direction)."""
    columns = [(name, key, arrow) for name, key, arrow in TABLE
               if any(key in r for results in results_by_label.values() for r in results.values())]
    width = max(len(f"{label} {method}") for label, results in results_by_label.items() for method in results)
    head = f"{'run method':<{width}} " + " ".join(f"{name + ('↓' if arrow == 'down' else '↑'):>7}"
                                                  for name, _, arrow in columns) + "       N"
    lines = [head, "-" * len(head)]
    for label, results in results_by_label.items():
        for method, r in results.items():
            cells = " ".join(f"{r[key]:7.2f}" if key in r else f"{'-':>7}" for _, key, _ in columns)
            lines.append(f"{label + ' ' + method:<{width}} {cells} {r['num_images']:7d}")
    return "\n".join(lines)


def _comparable(card: dict, other: dict) -> list[str]:
    """Protocol entries that differ between two cards (data subset, metric settings, image size, class source)."""
    keys = ["name", "pixels_per_step", "step_pixels", "blur_kernel", "blur_sigma", "deletion_substrate",
            "class_source", "masking_space", "softmax", "perturbation_fractions", "image_size", "num_images"]
    diffs = [key for key in keys if card.get(key) != other.get(key)]
    if card.get("data", {}).get("indices_sha256") != other.get("data", {}).get("indices_sha256"):
        diffs.append("data.indices_sha256")
    return diffs


def load_summary(path: str) -> dict:
    path = Path(path)
    file = path / SUMMARY_NAME if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"--compare: {file} not found (give an objrecon_imagenet.py --store_dir or its "
                                f"{SUMMARY_NAME})")
    import json
    try:
        summary = json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"--compare: {file} is not valid JSON: {error}") from None
    if not {"results", "curves", "protocol"} <= set(summary):
        raise ValueError(f"--compare: {file} is not a summary of objrecon_imagenet.py")
    summary["path"] = str(file)
    return summary


def _plot_name(method: str) -> str:
    return method.replace("+", "p")


def write_plots(store_dir: Path, label: str, curves: dict, other: Optional[dict]) -> list[Path]:
    written = []
    for method, pair in curves.items():
        written.append(save_curve_plot(store_dir / f"curves_{_plot_name(method)}.png", pair,
                                       f"{label}: {method}, mean insertion / deletion"))
    written.append(save_curve_panels(
        store_dir / "curves_methods.png",
        {mode: {method: pair[mode] for method, pair in curves.items()} for mode in ("insertion", "deletion")},
        f"{label}: methods"))
    if other is not None:
        panels = {mode: {} for mode in ("insertion", "deletion")}
        for run_label, run_curves in ((other["label"], other["curves"]), (label, curves)):
            for method, pair in run_curves.items():
                for mode in panels:
                    panels[mode][f"{run_label} {method}"] = pair[mode]
        written.append(save_curve_panels(store_dir / "curves_compare.png", panels, f"{other['label']} vs {label}"))
    return written


# --------------------------------------------------------------------------------------------
# Driver

def run(args: argparse.Namespace) -> dict:
    from .distributed import (
        cleanup_distributed,
        gather_in_order,
        gather_tensors_in_order,
        setup_distributed,
        shard_indices,
    )
    if args.use_gpu and not torch.cuda.is_available():
        raise ValueError("--use_gpu given but CUDA is not available (leave it out to evaluate on the CPU)")
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
    began = time.perf_counter()
    if args.store_dir is None:
        args.store_dir = str(default_store_dir(args.state_root, args.model))
    ensure_writable_dir(args.store_dir, "--store_dir")
    other = load_summary(args.compare) if args.compare else None
    sources = resolve_sources(args)
    env, device = setup_distributed(args.use_gpu)
    try:
        model, config = load_trained_model(args.state_root, args.model, args.pool, args.classes, args.heads)
        model.to(device)
        if args.channels_last:
            model.to(memory_format=torch.channels_last)
        imsize = args.imsize or config.get("imsize") or 224
        dataset = build_dataset(args.root_data, args.path_lbl, imsize, train=False, mean=config["mean"],
                                std=config["std"], num_classes=config["classes"], crop_pct=args.crop_pct,
                                squash=args.squash)
        preprocessing = preprocessing_card(imsize, args.crop_pct, args.squash, config["mean"], config["std"])
        identity = evaluation_identity(model, config, dataset.samples, preprocessing)
        notes = check_sources(sources, identity)
        if env.is_main:
            for note in notes:
                print(f"warning: {note}", file=sys.stderr, flush=True)
        rows, targets, class_source = select_rows(args, sources, len(dataset), dataset.targets)
        protocol = dataclasses.replace(get_protocol(args.protocol), class_source=class_source)
        if env.is_main and class_source != get_protocol(args.protocol).class_source:
            print(f"note: the {_source_name(class_source)} class is explained and scored (the saliency file's or "
                  f"--class_source), not the {_source_name(get_protocol(args.protocol).class_source)} class of "
                  f"--protocol {args.protocol}", flush=True)
        built = build_methods(model, [s.method for s in sources if not s.from_file], args.engine, args.seed)
        for source in sources:
            source.saliency = built.get(source.method)
        mask_root = _masks_for(dataset, rows)
        shard = shard_indices(rows, env.rank, env.world_size)
        if env.is_main:
            where = ", ".join(f"{s.method} ({'file ' + str(s.path) if s.from_file else 'computed'})" for s in sources)
            print(f"evaluating {len(rows)} images x {len(sources)} method(s): {where}; protocol {protocol.name}, "
                  f"{_source_name(class_source)} class, {imsize}px, world size {env.world_size}", flush=True)
        records, computed = _evaluate_shard(args, model, dataset, shard, sources, targets, config, imsize, mask_root,
                                            device, protocol, env.is_main)
        records = gather_in_order(records, [r["index"] for r in records], order=rows)
        saved_maps = {}
        if args.save_maps:
            for method, parts in computed.items():
                # an empty shard still joins the collective, with the method's map size
                if parts:
                    local = torch.cat(parts)
                else:
                    local = torch.zeros(0, *_probe_map_size(sources, method, dataset, device))
                saved_maps[method] = gather_tensors_in_order(local, shard, order=rows)
    finally:
        cleanup_distributed()
    if not env.is_main:
        return {}

    store_dir = Path(args.store_dir)
    methods = [s.method for s in sources]
    label = args.label or config.get("pool", "model")
    fractions = list(protocol.perturbation_fractions)
    results, curves = summarize_records(records, methods, fractions)
    for method, maps in saved_maps.items():
        save_maps(store_dir, method, maps, rows, [r["methods"][method]["target"] for r in records], class_source,
                  identity)
    card = {
        **protocol.to_dict(),
        "step_pixels": protocol.step_pixels(imsize, imsize),
        "steps": math.ceil(imsize * imsize / protocol.step_pixels(imsize, imsize)),
        "image_size": imsize,
        "num_images": len(rows),
        "class_source_description": _source_name(class_source) + " class (scored and explained)",
        "data": {
            "root_data": str(args.root_data) if args.root_data else f"built-in dataset ({dataset.root})",
            "list_file": str(getattr(dataset, "list_file", None) or ""),
            "dataset_images": len(dataset),
            "fraction": args.fraction, "indexes": parse_indexes(args.indexes), "seed": args.seed,
            "indices_sha256": indices_hash(rows),
            "preprocessing": preprocessing,
            "masks": str(mask_root / MASKS_DIRNAME) if mask_root else None,
        },
        "saliency": {s.method: s.card() for s in sources},
        "model": {"state_root": args.state_root,
                  **{k: config.get(k) for k in ("backbone", "pool", "classes", "heads")}},
        "precision": {"amp": args.amp, "channels_last": args.channels_last, "device": str(device)},
        "versions": library_versions(),
    }
    summary = {"label": label, "protocol": card, "results": results, "curves": curves,
               "run": {"world_size": env.world_size, "batch_size": args.batch_size,
                       "seconds": round(time.perf_counter() - began, 2), "argv": getattr(args, "argv", None)}}
    if other is not None:
        other.setdefault("label", Path(other["path"]).parent.name)
        if other["label"] == label:
            other["label"] = f"{other['label']} ({Path(other['path']).parent.name})"
        summary["compare"] = {"path": other["path"], "label": other["label"],
                              "differences": _comparable(card, other["protocol"])}
    write_csv(store_dir / METRICS_NAME, metrics_rows(records, methods), CSV_FIELDS)
    save_report(store_dir / SUMMARY_NAME, summary)
    write_plots(store_dir, label, curves, other)

    table = {label: results}
    if other is not None:
        table = {other["label"]: other["results"], **table}
    print(format_table(table))
    if other is not None and summary["compare"]["differences"]:
        print(f"note: {other['path']} differs in {', '.join(summary['compare']['differences'])}: not directly "
              f"comparable")
    print(f"wrote {store_dir / METRICS_NAME}, {store_dir / SUMMARY_NAME} and curves_*.png "
          f"({summary['run']['seconds']:.1f} s)")
    return summary


def _probe_map_size(sources, method, dataset, device) -> tuple[int, int]:
    """Native map size of a computed method, from one image (only needed by a rank with an empty shard)."""
    source = next(s for s in sources if s.method == method)
    image, label = dataset[0]
    return tuple(compute_maps(source.saliency, image[None].to(device), torch.tensor([label], device=device), [0]
                              ).shape[1:])


def main(argv: Optional[Sequence[str]] = None, description: Optional[str] = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(build_parser(description), argv)
    args.argv = argv
    try:
        return run(args)
    except (ValueError, OSError) as error:
        raise SystemExit(f"error: {error_line(error)}") from None
