"""The training job behind ``main_INets.py``: model, optimisation, the run folder, exact resume, DDP; only rank 0
writes files."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn as nn
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from models import ModelSettings, create_model, data_config, load_backbone_weights, model_config, parse_model_name
from models.weights import non_finite_weight, resolve_weights_path
from utils.data import SINGLE_LABEL, EpochIndexSampler
from utils.runtime.distributed import cleanup_distributed, setup_distributed
from utils.runtime.forward import check_device
from utils.runtime.layout import RunFolder
from utils.runtime.progress import on_terminal
from utils.runtime.seeding import derived_seed, seed_everything
from utils.task import create_task

from .data import build_training_data
from .log import RunLog
from .loops import DIVERGENCE_HINT, EpochStats, Optimisation, evaluate, train_one_epoch
from .pipeline import TrainingResult
from .recipe import build_criterion, build_mixup, build_optimizer, build_scheduler
from .settings import TrainingSettings

# A resumed run must rebuild the same network, learn the same task and see images of the same geometry: these config
# entries have to agree, each named by the flag that sets it (runs saved before the task was recorded are
# single-label)
_INPUT_STATISTICS = "(--pretrained, --init_from)"
_RESUME_KEYS = {"backbone": "--model", "pool": "--pool", "classes": "--classes", "heads": "--heads",
                "task": "--dataset (its task)", "imsize": "--imsize", "mean": f"the input mean {_INPUT_STATISTICS}",
                "std": f"the input std {_INPUT_STATISTICS}"}
_RESUME_DEFAULTS = {"task": SINGLE_LABEL}
_GEOMETRY_KEYS = ("imsize", "mean", "std")  # a state that does not record them is not checked on them


def _check_resume_config(saved: dict, config: dict, path: Path) -> None:
    for key, flag in _RESUME_KEYS.items():
        recorded = saved.get(key, _RESUME_DEFAULTS.get(key))
        if recorded is None and key in _GEOMETRY_KEYS:
            continue
        if recorded != config.get(key):
            raise ValueError(f"--resume: {path} was saved with {flag} {_shown(recorded)}, but this run has "
                             f"{flag} {_shown(config.get(key))}; use another --store_dir or the original flags")


def _shown(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


class Trainer:
    """Runs one training job as ``settings`` say; only rank 0 writes files, ``record`` as the run's ``args.yaml``
    (default: the settings themselves, their defaults resolved)."""

    def __init__(self, settings: TrainingSettings, record: Optional[Mapping[str, Any]] = None) -> None:
        # training's model defaults (a no-op on the flags' settings, which have them)
        self.settings = settings = dataclasses.replace(settings, model=settings.model.for_training())
        self.record = dict(record) if record is not None else None
        run, model = settings.run, settings.model
        check_device(run.use_gpu, settings.forward.amp)
        self.env, self.device = setup_distributed(run.use_gpu)
        self.is_main = self.env.is_main
        # progress bars belong on a terminal; batch jobs log to files (see _step_printer)
        self.progress_bars = self.is_main and on_terminal()
        self.run = RunFolder(run.store_dir)
        if not run.resume and not run.overwrite:
            # every rank checks before rank 0 writes anything (DDP's set-up below is the rendezvous)
            self.run.check_not_a_run()
        if run.fixed:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        seed_everything(run.seed)
        backbone_name, self.pool = parse_model_name(model.name, model.pool)
        mean, std = _normalisation(model, backbone_name)
        data = build_training_data(settings.data, model.classes, run.seed, mean, std, self.env.rank,
                                   self.env.world_size)
        self.train_set, self.val_set, num_classes = data.train, data.val, data.num_classes
        self.log(data.validation)
        self.forward = dataclasses.replace(settings.forward, device=self.device, chunk=run.batch_size)
        self.task = create_task(data.task)
        # the task's criterion unless the settings name one, resolved here so that a run's args.yaml records it
        loss = dataclasses.replace(settings.loss, criterion=settings.loss.criterion_for(self.task.default_criterion))
        self.settings = settings = dataclasses.replace(settings, loss=loss)
        self.num_classes = num_classes
        self.class_names = data.class_names or [str(c) for c in range(num_classes)]
        self.model = self._build_model(num_classes)
        self.config = model_config(self.model, backbone_name, settings.data.imsize, mean, std, data.class_names,
                                   data.task)
        self.train_loader = self._loader(self.train_set, train=True)
        self.val_loader = self._loader(self.val_set, train=False) if self.val_set is not None else None
        optimizer = build_optimizer(self.model, settings.optimizer)
        ema = settings.optimizer.ema
        self.optimisation = Optimisation(
            criterion=build_criterion(loss.criterion, loss.smoothing, loss.mixes, self.task.multi_label),
            optimizer=optimizer,
            scheduler=build_scheduler(optimizer, settings.schedule, run.epochs, len(self.train_loader)),
            mixup=build_mixup(loss, num_classes, self.task.multi_label),
            scaler=torch.amp.GradScaler("cuda") if self.forward.amp == "fp16" and self.device.type == "cuda"
            else None,
            clip_grad=settings.optimizer.clip_grad,
            ema=ModelEmaV3(self.model, decay=settings.optimizer.ema_decay) if ema else None)
        self.start_epoch, self.best_accuracy, self.best_epoch, self.log_rows = 0, -math.inf, 0, []
        self._resume()
        self.ddp_model = self.model
        if self.env.is_distributed:
            self.ddp_model = DistributedDataParallel(self.model, device_ids=[self.device] if self.device.type == "cuda"
                                                     else None)

    def _build_model(self, num_classes: int) -> nn.Module:
        settings = self.settings.model
        model = create_model(settings.name, pool=settings.pool, num_classes=num_classes, heads=settings.heads,
                             pretrained=settings.pretrained, drop_rate=settings.drop_rate)
        if settings.init_from:
            report = load_backbone_weights(model, settings.init_from)
            self.log(f"--init_from: {report}")
        if settings.freeze:
            model.freeze_backbone()
        return self.forward.prepare_model(model, self.device)

    def _loader(self, dataset, train: bool) -> DataLoader:
        run = self.settings.run
        sampler = None
        if train:
            sampler = EpochIndexSampler(DistributedSampler(dataset, num_replicas=self.env.world_size,
                                                           rank=self.env.rank, shuffle=True, seed=run.seed))
        return DataLoader(dataset, batch_size=run.batch_size, sampler=sampler, shuffle=False,
                          num_workers=run.workers, pin_memory=self.device.type == "cuda",
                          drop_last=train and len(dataset) >= run.batch_size * self.env.world_size,
                          persistent_workers=run.workers > 0)

    def _resume(self) -> None:
        resume = self.settings.run.resume
        if not resume:
            return
        # the folder's config.json (also left by a start killed before its first epoch committed) must describe
        # this network, whichever state resumes: a new config.json never lands beside another network's weights
        if self.run.config.is_file():
            _check_resume_config(self.run.read_config(), self.config, self.run.config)
        path = self.run.state if resume == "auto" else Path(resume)
        if not path.exists():
            if resume == "auto":
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
        self.best_epoch = _best_epoch(self.log_rows, self.task.score_key, self.best_accuracy)
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
        interval, steps = self.settings.run.log_interval, len(self.train_loader)
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
        every = self.settings.run.s_iterations
        if every and epoch % every == 0:
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

    def fit(self) -> TrainingResult:
        """Trains from the start (or resumed) epoch to the last; the result describes the run folder."""
        run = self.settings.run
        run_log = None
        if self.is_main:
            if run.overwrite:
                self.run.remove_run_files()
            self.run.path.mkdir(parents=True, exist_ok=True)
            self.run.remove_stale_temporaries()
            self.run.save_config(self.config)
            self.run.save_args(self.record if self.record is not None else self.settings.as_record())
            run_log = RunLog(self.run, self.log_rows)
            stream = self.model.num_stream_parameters()
            trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
            self.log(f"{self.settings.model.name} pool={self.pool}: {trainable:,} trainable parameters "
                     f"({stream:,} in the stream), {len(self.train_set)} training images, "
                     f"world size {self.env.world_size}, device {self.device}")
        try:
            for epoch in range(self.start_epoch, run.epochs):
                self._run_epoch(epoch, run_log)
        finally:
            if run_log is not None:
                run_log.close()
            cleanup_distributed()
        self.log(f"run folder: {self.run.path.resolve()}")
        return TrainingResult(run_dir=self.run.path, config=self.config, rows=tuple(map(dict, self.log_rows)),
                              score_key=self.task.score_key, best_score=self.best_accuracy,
                              best_epoch=self.best_epoch)

    def _run_epoch(self, epoch: int, run_log: Optional[RunLog]) -> dict:
        run = self.settings.run
        # Re-seeding per epoch makes a resumed run draw exactly what the uninterrupted one drew.
        seed_everything(derived_seed(run.seed, epoch, self.env.rank))
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
        # the epoch's last step can leave weights that are not finite, or that only give NaN logits, which no training
        # loss of the epoch shows; DDP keeps the weights (and reduces the validation loss) alike on every rank, so
        # every rank stops here alike, before anything of the epoch is saved
        _check_not_diverged(self.model, epoch, val)
        score = val.score if val is not None else train.score
        improved = score > self.best_accuracy
        if improved:
            self.best_accuracy, self.best_epoch = score, epoch + 1
        row = {"epoch": epoch + 1, **self._scores("train", train), **self._scores("val", val),
               "lr": optimisation.lr, "images_per_s": round(train.throughput, 2)}
        self.log_rows.append(row)
        if self.is_main:
            self._save(epoch + 1, improved, run_log)
            name = self.task.score_label
            val_text = f" | val loss {val.loss:.4f} {name} {val.score:.2f}%" if val else ""
            self.log(f"epoch {epoch + 1}/{run.epochs} | train loss {train.loss:.4f} {name} {train.score:.2f}%"
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


def _check_not_diverged(model: nn.Module, epoch: int, val: Optional[EpochStats]) -> None:
    name = non_finite_weight(model)
    if name is not None:
        raise ValueError(f"epoch {epoch + 1}: the weight {name} is not finite after training; nothing of this "
                         f"epoch is saved, the run folder keeps the last finite epoch: {DIVERGENCE_HINT}")
    if val is not None and not math.isfinite(val.loss):
        raise ValueError(f"epoch {epoch + 1}: the validation loss is {val.loss}; nothing of this epoch is saved, the "
                         f"run folder keeps the last finite epoch: {DIVERGENCE_HINT}")


def _normalisation(model: ModelSettings, backbone: str) -> tuple[tuple, tuple]:
    """The input statistics the starting weights expect: those of the ``init_from`` run, else the pretrained config
    of the backbone's weights (timm's, or the packaged weights')."""
    if model.init_from:
        run = RunFolder(resolve_weights_path(model.init_from).parent)
        if run.config.is_file():
            config = run.read_config()
            return tuple(config["mean"]), tuple(config["std"])
    return data_config(backbone, pretrained=model.pretrained)


def _best_epoch(rows: list[Mapping], score_key: str, best: float) -> int:
    """The epoch of score ``best`` among the log rows of a resumed run (validation's score, else training's, as
    :meth:`Trainer._run_epoch` picks it; the rows hold it rounded)."""
    for row in rows:
        cell = row.get(f"val_{score_key}", "")
        score = cell if cell != "" else row.get(f"train_{score_key}", "")
        if score != "" and math.isclose(float(score), best, abs_tol=1e-4):
            return int(row["epoch"])
    return 0
