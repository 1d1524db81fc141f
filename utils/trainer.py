"""The training job behind ``main_INets.py``: data, model, optimisation, checkpoints, exact resume, DDP."""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import timm.optim
import timm.scheduler
import torch
import torch.nn as nn
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm

from models import CONFIG_NAME, create_model, load_backbone_weights, model_config, parse_model_name, read_config
from models.weights import MODEL_WEIGHTS_NAME, resolve_weights_path

from .checkpoint import (
    BEST_WEIGHTS_NAME,
    TRAIN_STATE_NAME,
    load_training_state,
    save_json,
    save_training_state,
    save_weights,
    save_yaml,
    seed_everything,
)
from .data import (
    CLASSES_FILENAME,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageDataset,
    ListDataset,
    build_dataset,
    subset_indices,
)
from .distributed import cleanup_distributed, setup_distributed, shard_indices
from .engine import EpochIndexSampler, EpochSeededDataset, build_criterion, build_mixup, evaluate, train_one_epoch
from .run_folder import (
    ARGS_NAME,
    EMA_WEIGHTS_NAME,
    RunLog,
    check_not_a_run,
    checkpoint_name,
    read_log_rows,
    remove_run_files,
    remove_stale_temporaries,
)

# A resumed run must rebuild the same network: these config entries have to agree.
_RESUME_KEYS = ("backbone", "pool", "classes", "heads")
_LIST_NAMES = ("train.csv", "train.txt")
_VAL_LIST_NAMES = ("val.csv", "val.txt")


def _find_list(folder: Path, names: tuple[str, ...]) -> Optional[Path]:
    return next((folder / name for name in names if (folder / name).is_file()), None)


def _resolve_lists(args: argparse.Namespace) -> tuple[Optional[Path], Optional[Path]]:
    """The training and validation lists: ``--path_list`` names a list file (found in the working directory,
    else under ``--root_data``) or a folder holding ``train.csv``; without ``--val_list``, a ``val.csv`` or
    ``val.txt`` beside it is the validation list."""
    if args.path_list is None:
        return None, args.val_list
    path = Path(args.path_list)
    if path.is_dir():
        return _find_list(path, _LIST_NAMES), args.val_list or _find_list(path, _VAL_LIST_NAMES)
    if not path.is_file() and args.root_data is not None and (Path(args.root_data) / path).is_file():
        path = Path(args.root_data) / path
    beside = _find_list(path.parent, _VAL_LIST_NAMES) if path.is_file() else None
    if beside is not None and beside.resolve() == path.resolve():
        beside = None
    return path, args.val_list or beside


@dataclass
class TrainingData:
    train: EpochSeededDataset
    val: Optional[Subset]
    num_classes: int
    class_names: Optional[list[str]]
    validation: str  # where the validation images come from, for the log


def build_training_data(args: argparse.Namespace, mean, std, rank: int, world_size: int) -> TrainingData:
    """Train and validation datasets, the model's class count and the class names: the built-in set by default,
    else ``--root_data``/``--path_list``.

    Without a validation list, ``--val_split`` of the training list is held out (seeded). Every label of both
    lists is checked against the class count here, so a bad one names its file and line before training starts.
    """
    if args.root_data is not None and not Path(args.root_data).is_dir():
        raise FileNotFoundError(f"--root_data {args.root_data} is not a folder")
    train_list, val_list = _resolve_lists(args)
    common = dict(imsize=args.imsize, mean=mean, std=std, num_classes=args.classes)
    train_set = build_dataset(args.root_data, train_list, train=True, scale=tuple(args.crop_scale), **common)
    if len(train_set) == 0:
        raise ValueError(f"--path_list {train_list} lists no images")
    num_classes, classes_origin = _count_classes(args, train_set)
    if args.root_data is None or val_list is not None:
        val_root = args.val_root or args.root_data
        val_set = build_dataset(val_root, val_list, train=False, **common)
        train_indices = list(range(len(train_set)))
        val_indices = list(range(len(val_set)))
        validation = f"validation: list {val_set.list_file}" if isinstance(val_set, ListDataset) \
            else f"validation: the image folder {val_set.root}"
    else:
        val_set = build_dataset(args.root_data, train_list, train=False, **common)
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(args.seed)).tolist()
        held_out = int(round(len(order) * args.val_split))
        val_indices, train_indices = sorted(order[:held_out]), sorted(order[held_out:])
        source = train_list or args.root_data
        validation = (f"validation: {held_out} images of {source} held out (--val_split {args.val_split}; no "
                      f"--val_list, no val.csv or val.txt beside the training list)") if held_out else \
            "validation: none (--val_split 0 and no validation list)"
    for dataset in (train_set, val_set):
        _check_labels(dataset, num_classes, classes_origin)
    train_indices = [train_indices[i] for i in subset_indices(len(train_indices), args.fraction, args.seed)]
    train = EpochSeededDataset(Subset(train_set, train_indices), args.seed)
    # Each rank validates its own shard, without the padding a DistributedSampler would add.
    val = Subset(val_set, shard_indices(val_indices, rank, world_size)) if val_indices else None
    return TrainingData(train, val, num_classes, train_set.classes, validation)


def _count_classes(args: argparse.Namespace, train_set: ImageDataset) -> tuple[int, str]:
    """The model's class count, and where it comes from (for error messages)."""
    if args.classes:
        return args.classes, f"--classes {args.classes}"
    if train_set.classes:
        origin = train_set.list_file.parent / CLASSES_FILENAME if isinstance(train_set, ListDataset) \
            else f"the class folders of {train_set.root}"
        return len(train_set.classes), f"the {len(train_set.classes)} classes of {origin}"
    labels = set(train_set.targets)
    count = max(labels) + 1
    empty = sorted(set(range(count)) - labels)
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
        raise ValueError(f"{train_set.list_file}: no sample has label {shown}, so classes 0..{count - 1} would "
                         f"include classes without data; pass --classes {count} if that is meant (or name the "
                         f"classes in a {CLASSES_FILENAME} beside the list)")
    return count, f"the {count} classes of the training labels (--classes sets more)"


def _check_labels(dataset: ImageDataset, num_classes: int, classes_origin: str) -> None:
    if not isinstance(dataset, ListDataset):
        return  # image folders label by sub-folder: in range by construction
    for label, line_number in zip(dataset.targets, dataset.line_numbers):
        if label >= num_classes:
            raise ValueError(f"{dataset.list_file}:{line_number}: label {label} is outside [0, {num_classes}) "
                             f"for {classes_origin}")


def _check_resume_config(saved: dict, config: dict, path: Path) -> None:
    for key in _RESUME_KEYS:
        if saved.get(key) != config.get(key):
            raise ValueError(f"--resume: {path} was saved for {key}={saved.get(key)!r}, but this run has "
                             f"{key}={config.get(key)!r}; use another --store_dir or the original flags")


class Trainer:
    """Runs one training job; only rank 0 writes files."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.env, self.device = setup_distributed(args.use_gpu)
        self.is_main = self.env.is_main
        # progress bars belong on a terminal; batch jobs log to files (see _step_printer)
        self.progress_bars = self.is_main and sys.stderr.isatty()
        self.store_dir = Path(args.store_dir)
        if not args.resume and not args.overwrite:
            # every rank checks before rank 0 writes anything (DDP's set-up below is the rendezvous)
            check_not_a_run(self.store_dir)
        if args.fixed:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        seed_everything(args.seed)
        backbone_name, self.pool = parse_model_name(args.model, args.pool)
        mean, std = _normalisation(args, backbone_name)
        data = build_training_data(args, mean, std, self.env.rank, self.env.world_size)
        self.train_set, self.val_set, num_classes = data.train, data.val, data.num_classes
        self.log(data.validation)
        self.model = self._build_model(num_classes)
        self.config = model_config(self.model, backbone_name, args.imsize, mean, std, data.class_names)
        self.criterion = build_criterion(args.criterion, args.smoothing, args.mixup > 0 or args.cutmix > 0)
        self.mixup = build_mixup(args.mixup, args.cutmix, args.mixup_prob, args.mixup_switch_prob,
                                 args.smoothing, num_classes)
        self.train_loader = self._loader(self.train_set, train=True)
        self.val_loader = self._loader(self.val_set, train=False) if self.val_set is not None else None
        self.optimizer = timm.optim.create_optimizer_v2(self.model, opt=args.opt, lr=args.lr,
                                                        weight_decay=args.weight_decay, momentum=args.momentum)
        self.scheduler = self._build_scheduler()
        self.scaler = torch.amp.GradScaler("cuda") if args.amp == "fp16" and self.device.type == "cuda" else None
        self.ema = ModelEmaV3(self.model, decay=args.ema_decay) if args.ema else None
        self.start_epoch, self.best_accuracy, self.log_rows = 0, -math.inf, []
        self._resume()
        self.ddp_model = self.model
        if self.env.is_distributed:
            self.ddp_model = DistributedDataParallel(self.model, device_ids=[self.device] if self.device.type == "cuda"
                                                     else None)

    def _build_model(self, num_classes: int) -> nn.Module:
        args = self.args
        model = create_model(args.model, pool=args.pool, num_classes=num_classes, heads=args.heads,
                             pretrained=args.pretrained, drop_rate=args.drop_rate)
        if args.init_from:
            report = load_backbone_weights(model, args.init_from)
            self.log(f"--init_from: {report}")
        if args.freeze:
            model.freeze_backbone()
        model.to(self.device)
        if args.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def _loader(self, dataset, train: bool) -> DataLoader:
        sampler = None
        if train:
            sampler = EpochIndexSampler(DistributedSampler(dataset, num_replicas=self.env.world_size,
                                                           rank=self.env.rank, shuffle=True, seed=self.args.seed))
        return DataLoader(dataset, batch_size=self.args.batch_size, sampler=sampler, shuffle=False,
                          num_workers=self.args.workers, pin_memory=self.device.type == "cuda",
                          drop_last=train and len(dataset) >= self.args.batch_size * self.env.world_size,
                          persistent_workers=self.args.workers > 0)

    def _build_scheduler(self):
        args = self.args
        if args.sched == "none":
            return None
        scheduler, _ = timm.scheduler.create_scheduler_v2(
            self.optimizer, sched=args.sched, num_epochs=args.epochs, decay_epochs=args.decay_epochs,
            decay_milestones=args.milestones, decay_rate=args.decay_rate, min_lr=args.min_lr,
            warmup_lr=args.warmup_lr, warmup_epochs=args.warmup_epochs, step_on_epochs=True,
            updates_per_epoch=len(self.train_loader))
        return scheduler

    def _resume(self) -> None:
        if not self.args.resume:
            return
        # the folder's config.json (also left by a start killed before its first epoch committed) must describe
        # this network, whichever state resumes: a new config.json never lands beside another network's weights
        if (self.store_dir / CONFIG_NAME).is_file():
            _check_resume_config(read_config(self.store_dir), self.config, self.store_dir / CONFIG_NAME)
        path = self.store_dir / TRAIN_STATE_NAME if self.args.resume == "auto" else Path(self.args.resume)
        if not path.exists():
            if self.args.resume == "auto":
                self.log(f"--resume: no {path} yet, starting from scratch")
                return
            raise FileNotFoundError(f"--resume {path}: file not found")
        state = load_training_state(path)
        _check_resume_config(state["config"], self.config, path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        self.start_epoch = state["epoch"]
        self.best_accuracy = state["best_accuracy"]
        self.log_rows = state["log"] if "log" in state else read_log_rows(self.store_dir, self.start_epoch)
        if self.scheduler is not None:
            # timm schedules are functions of the epoch: re-planned from the flags, as timm's train.py does,
            # so a resumed run may also extend --epochs.
            self.scheduler.step(self.start_epoch)
        self.log(f"resumed from {path} after epoch {self.start_epoch}")

    def log(self, message: str) -> None:
        if self.progress_bars:
            tqdm.write(message)  # above the bar, which it redraws
        elif self.is_main:
            print(message, flush=True)

    def _step_printer(self, epoch: int) -> Optional[Callable[[int, float], None]]:
        """Plain lines every ``--log_interval`` steps (and at the epoch's last) where there are no progress bars:
        a log file would keep every redraw of a bar."""
        interval, steps = self.args.log_interval, len(self.train_loader)
        if self.progress_bars or not self.is_main or interval <= 0:
            return None
        losses = []

        def print_step(global_step: int, loss: float) -> None:
            step = global_step - epoch * steps + 1
            losses.append(loss)
            if step % interval == 0 or step == steps:
                self.log(f"epoch {epoch + 1} step {step}/{steps} loss {sum(losses) / len(losses):.4f} "
                         f"lr {self.optimizer.param_groups[0]['lr']:.2e}")
                losses.clear()

        return print_step

    def _training_state(self, epoch: int) -> dict:
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "epoch": epoch, "best_accuracy": self.best_accuracy, "config": self.config, "log": self.log_rows,
        }

    def _save(self, epoch: int, improved: bool, run_log: RunLog) -> None:
        """Every file of the epoch, then ``last.pth``, the commit point: a kill before it redoes the epoch,
        so no due checkpoint, weights file or log row is skipped."""
        state = self._training_state(epoch)
        if self.args.s_iterations and epoch % self.args.s_iterations == 0:
            save_training_state(self.store_dir / checkpoint_name(epoch), state)
        weights = self.model.state_dict()
        meta = {"epoch": epoch, "backbone": self.config["backbone"], "pool": self.config["pool"]}
        save_weights(self.store_dir / MODEL_WEIGHTS_NAME, weights, meta)
        if self.ema is not None:
            save_weights(self.store_dir / EMA_WEIGHTS_NAME, self.ema.module.state_dict(), meta)
        if improved:
            save_weights(self.store_dir / BEST_WEIGHTS_NAME, weights, meta)
        run_log.append(self.log_rows[-1])
        save_training_state(self.store_dir / TRAIN_STATE_NAME, state)

    def fit(self) -> dict:
        args = self.args
        run_log = None
        if self.is_main:
            if args.overwrite:
                remove_run_files(self.store_dir)
            self.store_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.store_dir)
            save_json(self.store_dir / CONFIG_NAME, self.config)
            save_yaml(self.store_dir / ARGS_NAME, vars(args))
            run_log = RunLog(self.store_dir, self.log_rows)
            stream = self.model.num_stream_parameters()
            trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
            self.log(f"{args.model} pool={self.pool}: {trainable:,} trainable parameters "
                     f"({stream:,} in the stream), {len(self.train_set)} training images, "
                     f"world size {self.env.world_size}, device {self.device}")
        summary = {}
        try:
            for epoch in range(self.start_epoch, args.epochs):
                summary = self._run_epoch(epoch, run_log)
        finally:
            if run_log is not None:
                run_log.close()
            cleanup_distributed()
        self.log(f"run folder: {self.store_dir.resolve()}")
        return summary

    def _run_epoch(self, epoch: int, run_log: Optional[RunLog]) -> dict:
        args = self.args
        # Re-seeding per epoch makes a resumed run draw exactly what the uninterrupted one drew.
        seed_everything(args.seed * 1000 + epoch * 10 + self.env.rank)
        self.train_loader.sampler.set_epoch(epoch)
        train = train_one_epoch(
            self.ddp_model, self.train_loader, self.criterion, self.optimizer, self.device, epoch,
            scheduler=self.scheduler, mixup=self.mixup, amp=args.amp, scaler=self.scaler, clip_grad=args.clip_grad,
            ema=self.ema, channels_last=args.channels_last, progress=self.progress_bars,
            on_step=self._step_printer(epoch))
        if self.scheduler is not None:
            self.scheduler.step(epoch + 1)
        evaluated = self.ema.module if self.ema is not None else self.model
        val = evaluate(evaluated, self.val_loader, self.device, args.amp, args.channels_last, self.progress_bars,
                       desc=f"epoch {epoch + 1} val") if self.val_loader is not None else None
        accuracy = val.accuracy if val is not None else train.accuracy
        improved = accuracy > self.best_accuracy
        self.best_accuracy = max(self.best_accuracy, accuracy)
        row = {"epoch": epoch + 1, "train_loss": round(train.loss, 6), "train_acc": round(train.accuracy, 4),
               "val_loss": round(val.loss, 6) if val else "", "val_acc": round(val.accuracy, 4) if val else "",
               "lr": self.optimizer.param_groups[0]["lr"], "images_per_s": round(train.throughput, 2)}
        self.log_rows.append(row)
        if self.is_main:
            self._save(epoch + 1, improved, run_log)
            val_text = f" | val loss {val.loss:.4f} acc {val.accuracy:.2f}%" if val else ""
            self.log(f"epoch {epoch + 1}/{args.epochs} | train loss {train.loss:.4f} acc {train.accuracy:.2f}%"
                     f"{val_text} | {train.throughput:.1f} img/s")
        return row


def _normalisation(args: argparse.Namespace, backbone: str) -> tuple[tuple, tuple]:
    """The input statistics the starting weights expect: those of the --init_from run, [-1, 1] for the
    TF-ported EfficientNet-Lite weights, ImageNet's otherwise."""
    if args.init_from:
        config_path = resolve_weights_path(args.init_from).parent / CONFIG_NAME
        if config_path.is_file():
            config = read_config(config_path.parent)
            return tuple(config["mean"]), tuple(config["std"])
    if args.pretrained and "efficientnet_lite" in backbone:
        return (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    return IMAGENET_MEAN, IMAGENET_STD
