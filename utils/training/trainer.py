"""The training job behind ``main_INets.py``: model, optimisation, the run folder, exact resume, DDP; only rank 0
writes files."""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn as nn
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from models import create_model, data_config, load_backbone_weights, model_config, parse_model_name
from models.weights import resolve_weights_path
from utils.data import SINGLE_LABEL, EpochIndexSampler
from utils.runtime.distributed import cleanup_distributed, setup_distributed
from utils.runtime.forward import ForwardSettings
from utils.runtime.layout import RunFolder
from utils.runtime.progress import on_terminal
from utils.runtime.seeding import derived_seed, seed_everything
from utils.task import create_task

from .data import build_training_data
from .log import RunLog
from .loops import EpochStats, Optimisation, evaluate, train_one_epoch
from .recipe import build_criterion, build_mixup, build_optimizer, build_scheduler

# A resumed run must rebuild the same network and learn the same task: these config entries have to agree
# (runs saved before the task was recorded are single-label).
_RESUME_KEYS = ("backbone", "pool", "classes", "heads", "task")
_RESUME_DEFAULTS = {"task": SINGLE_LABEL}


def _check_resume_config(saved: dict, config: dict, path: Path) -> None:
    for key in _RESUME_KEYS:
        recorded = saved.get(key, _RESUME_DEFAULTS.get(key))
        if recorded != config.get(key):
            raise ValueError(f"--resume: {path} was saved for {key}={recorded!r}, but this run has "
                             f"{key}={config.get(key)!r}; use another --store_dir or the original flags")


class Trainer:
    """Runs one training job; only rank 0 writes files."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.env, self.device = setup_distributed(args.use_gpu)
        self.is_main = self.env.is_main
        # progress bars belong on a terminal; batch jobs log to files (see _step_printer)
        self.progress_bars = self.is_main and on_terminal()
        self.run = RunFolder(args.store_dir)
        if not args.resume and not args.overwrite:
            # every rank checks before rank 0 writes anything (DDP's set-up below is the rendezvous)
            self.run.check_not_a_run()
        if args.fixed:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        seed_everything(args.seed)
        backbone_name, self.pool = parse_model_name(args.model, args.pool)
        mean, std = _normalisation(args, backbone_name)
        data = build_training_data(args, mean, std, self.env.rank, self.env.world_size)
        self.train_set, self.val_set, num_classes = data.train, data.val, data.num_classes
        self.log(data.validation)
        self.forward = ForwardSettings(device=self.device, amp=args.amp, channels_last=args.channels_last,
                                       chunk=args.batch_size, compile=args.compile)
        self.task = create_task(data.task)
        self.num_classes = num_classes
        # the task's loss unless --criterion names one; set on args so that args.yaml records it
        args.criterion = args.criterion or self.task.default_criterion
        self.class_names = data.class_names or [str(c) for c in range(num_classes)]
        self.model = self._build_model(num_classes)
        self.config = model_config(self.model, backbone_name, args.imsize, mean, std, data.class_names, data.task)
        self.train_loader = self._loader(self.train_set, train=True)
        self.val_loader = self._loader(self.val_set, train=False) if self.val_set is not None else None
        optimizer = build_optimizer(self.model, args)
        self.optimisation = Optimisation(
            criterion=build_criterion(args.criterion, args.smoothing, args.mixup > 0 or args.cutmix > 0,
                                      self.task.multi_label),
            optimizer=optimizer, scheduler=build_scheduler(optimizer, args, len(self.train_loader)),
            mixup=build_mixup(args, num_classes, self.task.multi_label),
            scaler=torch.amp.GradScaler("cuda") if args.amp == "fp16" and self.device.type == "cuda" else None,
            clip_grad=args.clip_grad, ema=ModelEmaV3(self.model, decay=args.ema_decay) if args.ema else None)
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
        return self.forward.prepare_model(model, self.device)

    def _loader(self, dataset, train: bool) -> DataLoader:
        sampler = None
        if train:
            sampler = EpochIndexSampler(DistributedSampler(dataset, num_replicas=self.env.world_size,
                                                           rank=self.env.rank, shuffle=True, seed=self.args.seed))
        return DataLoader(dataset, batch_size=self.args.batch_size, sampler=sampler, shuffle=False,
                          num_workers=self.args.workers, pin_memory=self.device.type == "cuda",
                          drop_last=train and len(dataset) >= self.args.batch_size * self.env.world_size,
                          persistent_workers=self.args.workers > 0)

    def _resume(self) -> None:
        if not self.args.resume:
            return
        # the folder's config.json (also left by a start killed before its first epoch committed) must describe
        # this network, whichever state resumes: a new config.json never lands beside another network's weights
        if self.run.config.is_file():
            _check_resume_config(self.run.read_config(), self.config, self.run.config)
        path = self.run.state if self.args.resume == "auto" else Path(self.args.resume)
        if not path.exists():
            if self.args.resume == "auto":
                self.log(f"--resume: no {path} yet, starting from scratch")
                return
            raise FileNotFoundError(f"--resume {path}: file not found")
        state = RunFolder.load_state(path)
        _check_resume_config(state["config"], self.config, path)
        optimisation = self.optimisation
        self.model.load_state_dict(state["model"])
        optimisation.optimizer.load_state_dict(state["optimizer"])
        if optimisation.scaler is not None and state.get("scaler"):
            optimisation.scaler.load_state_dict(state["scaler"])
        if optimisation.ema is not None and state.get("ema"):
            optimisation.ema.load_state_dict(state["ema"])
        self.start_epoch = state["epoch"]
        self.best_accuracy = state["best_accuracy"]
        self.log_rows = state["log"] if "log" in state else self.run.read_log(self.start_epoch)
        if optimisation.scheduler is not None:
            # timm schedules are functions of the epoch: re-planned from the flags, as timm's train.py does,
            # so a resumed run may also extend --epochs.
            optimisation.scheduler.step(self.start_epoch)
        self.log(f"resumed from {path} after epoch {self.start_epoch}")

    def log(self, message: str) -> None:
        if self.progress_bars:
            from tqdm.auto import tqdm
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
                         f"lr {self.optimisation.lr:.2e}")
                losses.clear()

        return print_step

    def _training_state(self, epoch: int) -> dict:
        optimisation = self.optimisation
        return {
            "model": self.model.state_dict(), "optimizer": optimisation.optimizer.state_dict(),
            "scaler": optimisation.scaler.state_dict() if optimisation.scaler is not None else None,
            "ema": optimisation.ema.state_dict() if optimisation.ema is not None else None,
            "epoch": epoch, "best_accuracy": self.best_accuracy, "config": self.config, "log": self.log_rows,
        }

    def _save(self, epoch: int, improved: bool, run_log: RunLog) -> None:
        """Every file of the epoch, then ``last.pth``, the commit point: a kill before it redoes the epoch,
        so no due checkpoint, weights file or log row is skipped."""
        run, state = self.run, self._training_state(epoch)
        if self.args.s_iterations and epoch % self.args.s_iterations == 0:
            run.save_state(run.checkpoint(epoch), state)
        weights = self.model.state_dict()
        meta = {"epoch": epoch, "backbone": self.config["backbone"], "pool": self.config["pool"]}
        run.save_weights(run.weights, weights, meta)
        if self.optimisation.ema is not None:
            run.save_weights(run.ema_weights, self.optimisation.ema.module.state_dict(), meta)
        if improved:
            run.save_weights(run.best_weights, weights, meta)
        run_log.append(self.log_rows[-1])
        run.save_state(run.state, state)

    def fit(self) -> dict:
        args = self.args
        run_log = None
        if self.is_main:
            if args.overwrite:
                self.run.remove_run_files()
            self.run.path.mkdir(parents=True, exist_ok=True)
            self.run.remove_stale_temporaries()
            self.run.save_config(self.config)
            self.run.save_args(vars(args))
            run_log = RunLog(self.run, self.log_rows)
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
        self.log(f"run folder: {self.run.path.resolve()}")
        return summary

    def _run_epoch(self, epoch: int, run_log: Optional[RunLog]) -> dict:
        args = self.args
        # Re-seeding per epoch makes a resumed run draw exactly what the uninterrupted one drew.
        seed_everything(derived_seed(args.seed, epoch, self.env.rank))
        self.train_loader.sampler.set_epoch(epoch)
        optimisation = self.optimisation
        train = train_one_epoch(self.ddp_model, self.train_loader, optimisation, self.forward, self.device, epoch,
                                self.progress_bars, self.task, self.num_classes, on_step=self._step_printer(epoch))
        if optimisation.scheduler is not None:
            optimisation.scheduler.step(epoch + 1)
        evaluated = optimisation.ema.module if optimisation.ema is not None else self.model
        val = None
        if self.val_loader is not None:
            val = evaluate(evaluated, self.val_loader, self.forward, self.device, self.progress_bars, self.task,
                           self.num_classes, desc=f"epoch {epoch + 1} val")
        score = val.score if val is not None else train.score
        improved = score > self.best_accuracy
        self.best_accuracy = max(self.best_accuracy, score)
        row = {"epoch": epoch + 1, **self._scores("train", train), **self._scores("val", val),
               "lr": optimisation.lr, "images_per_s": round(train.throughput, 2)}
        self.log_rows.append(row)
        if self.is_main:
            self._save(epoch + 1, improved, run_log)
            name = self.task.score_label
            val_text = f" | val loss {val.loss:.4f} {name} {val.score:.2f}%" if val else ""
            self.log(f"epoch {epoch + 1}/{args.epochs} | train loss {train.loss:.4f} {name} {train.score:.2f}%"
                     f"{val_text} | {train.throughput:.1f} img/s")
        return row

    def _scores(self, split: str, stats: Optional[EpochStats]) -> dict:
        """The log columns of one pass: loss and accuracy, or loss, mAP and (validation) the AP of each class."""
        def cell(value: Optional[float], digits: int = 4) -> object:
            return "" if value is None else round(value, digits)

        columns = {f"{split}_loss": cell(stats and stats.loss, 6)}
        columns[f"{split}_{self.task.score_key}"] = cell(stats and stats.score)
        if not self.task.multi_label:
            return columns
        if split == "val":
            class_ap = stats.scored.class_ap if stats else [None] * len(self.class_names)
            columns.update({f"val_ap_{name}": cell(ap) for name, ap in zip(self.class_names, class_ap)})
        return columns

def _normalisation(args: argparse.Namespace, backbone: str) -> tuple[tuple, tuple]:
    """The input statistics the starting weights expect: those of the --init_from run, else the pretrained config
    of the backbone's weights (timm's, or the packaged weights')."""
    if args.init_from:
        run = RunFolder(resolve_weights_path(args.init_from).parent)
        if run.config.is_file():
            config = run.read_config()
            return tuple(config["mean"]), tuple(config["std"])
    return data_config(backbone, pretrained=args.pretrained)
