"""The flags of ``main_INets.py`` and the settings they stand for: the only training code that sees the parsed
flags. :func:`settings_from_flags` turns them into :class:`~.settings.TrainingSettings` once, training's defaults
resolved; :func:`flag_record` is what the run folder's ``args.yaml`` records, the flags with those defaults."""
from __future__ import annotations

import argparse
from typing import Any, Optional

from models.cli import add_model_arguments, model_settings_from_flags
from utils.data import DATASET_KINDS, DataSource, kind_task
from utils.runtime.cli import add_config_argument
from utils.runtime.forward import AMP_DTYPES, ForwardSettings
from utils.task import create_task

from .recipe import CRITERIA, SCHEDULES
from .settings import (
    LossSettings,
    OptimizerSettings,
    RunSettings,
    ScheduleSettings,
    TrainingDataSettings,
    TrainingSettings,
)


def build_parser(description: Optional[str] = None) -> argparse.ArgumentParser:
    """The flags of ``main_INets.py`` (``description``: its usage text)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(parser)

    train = parser.add_argument_group("Training settings")
    train.add_argument("--epochs", type=int, default=6)
    train.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    train.add_argument("--opt", default="adamw", help="any timm optimizer: sgd, adamw, lamb, ...")
    train.add_argument("--momentum", type=float, default=0.9)
    train.add_argument("--weight_decay", type=float, default=0.05)
    train.add_argument("--criterion", choices=CRITERIA, default=None,
                       help="default: CrossEntropy; BCELogitsLoss (the only choice) for --dataset voc")
    train.add_argument("--smoothing", type=float, default=0.0, help="label smoothing")
    train.add_argument("--use_gpu", action="store_true", help="train on CUDA (cuda:LOCAL_RANK under DDP)")
    train.add_argument("--resume", nargs="?", const="auto", default=None,
                       help="continue from STORE_DIR/last.pth (or the given file); starts fresh if none exists")
    train.add_argument("--sched", choices=SCHEDULES, default="cosine",
                       help="multistep/step as the reference's ResNet recipe, or cosine")
    train.add_argument("--milestones", type=int, nargs="+", default=[30, 60, 90], help="multistep decay epochs")
    train.add_argument("--decay_epochs", type=float, default=30, help="step scheduler period")
    train.add_argument("--decay_rate", type=float, default=0.1)
    train.add_argument("--min_lr", type=float, default=0.0)
    train.add_argument("--warmup_epochs", type=int, default=0, help="linear warm-up epochs")
    train.add_argument("--warmup_lr", type=float, default=1e-5, help="learning rate at the start of warm-up")
    train.add_argument("--mixup", type=float, default=0.0, help="mixup alpha (0 = off)")
    train.add_argument("--cutmix", type=float, default=0.0, help="cutmix alpha (0 = off)")
    train.add_argument("--mixup_prob", type=float, default=1.0, help="probability of mixing a batch")
    train.add_argument("--mixup_switch_prob", type=float, default=0.5, help="probability of cutmix when both on")
    train.add_argument("--amp", choices=tuple(AMP_DTYPES), default="none", help="autocast dtype (fp16 on CUDA only)")
    train.add_argument("--channels_last", action="store_true", help="NHWC memory format (faster convolutions)")
    train.add_argument("--compile", action="store_true",
                       help="torch.compile the backbone (compiled in the first steps: pays on long runs)")
    train.add_argument("--clip_grad", type=float, default=None, help="clip the gradient norm to this value")
    train.add_argument("--ema", action="store_true", help="keep an exponential moving average of the weights")
    train.add_argument("--ema_decay", type=float, default=0.9998)
    train.add_argument("--log_interval", type=int, default=50,
                       help="when stderr is not a terminal (batch jobs): a plain line every N training steps "
                            "instead of progress bars (0 = epoch lines only)")

    data = parser.add_argument_group("Data initialization")
    data.add_argument("--dataset", choices=DATASET_KINDS, default="imagenet",
                      help="imagenet: single-label files (list files, image folders, ImageNet's train/val "
                           "layout, the built-in shapes); voc: multi-label Pascal VOC (a VOCdevkit year folder, or "
                           "the built-in multi-label shapes); wds: WebDataset tar shards; hf: a Hugging Face dataset "
                           "saved on disk (docs/data-formats.md)")
    data.add_argument("--root_data", default=None,
                      help="image root (--dataset voc: the VOCdevkit year folder, e.g. VOCdevkit/VOC2012; wds: the "
                           "folder of .tar shards; hf: the save_to_disk folder); default: the built-in generated "
                           "dataset")
    data.add_argument("--path_list", default=None,
                      help="training list (path,label per line) or a folder holding train.csv [and val.csv]; "
                           "without it --root_data must hold one sub-folder per class or ImageNet's train/ [and "
                           "val/]. --dataset voc: an image set (default train), a multi-label list (path,label "
                           "label ...) or a JSON list; wds: a sub-folder or glob of the shards (default train/ "
                           "where there is one); hf: a split (default train)")
    data.add_argument("--val_list", default=None,
                      help="validation list (default: val.csv or val.txt beside --path_list, a list file or a "
                           "folder; without one, --val_split of the training list). --dataset voc: an image set "
                           "(default val) or a list; wds: the shards' sub-folder or glob (default val/); hf: a "
                           "split (default validation, val or test)")
    data.add_argument("--val_root", default=None, help="image root of --val_list (default: --root_data)")
    data.add_argument("--val_split", type=float, default=0.1,
                      help="fraction of the training list held out for validation when there is no validation "
                           "list (0 = train on everything)")
    data.add_argument("--imsize", type=int, default=64, help="training / validation image size")
    data.add_argument("--crop_scale", type=float, nargs=2, default=(0.35, 1.0),
                      help="area range of the random resized crop (ImageNet recipes use 0.08 1.0; small objects "
                           "need a larger minimum so the crop keeps them)")
    data.add_argument("--store_dir", default=None,
                      help="run folder (default: runs/<model>_<pool>); a folder that holds a run needs --resume or "
                           "--overwrite")
    data.add_argument("--overwrite", action="store_true",
                      help="replace the run in --store_dir: its files are deleted first (other files stay)")
    data.add_argument("--batch_size", type=int, default=64, help="batch size per process")
    data.add_argument("--s_iterations", type=int, default=15, help="keep a checkpoint every N epochs")
    data.add_argument("--fraction", type=float, default=1.0, help="seeded random fraction of the training set")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--fixed", action="store_true", help="deterministic algorithms (bitwise reproducible runs)")
    data.add_argument("--workers", type=int, default=2, help="data loading processes per rank")

    model = add_model_arguments(parser)
    model.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                       help="start from ImageNet weights (EfficientNet-Lite0 from its installed package, others "
                            "from timm's hub); default: only where they are available offline and without "
                            "--init_from")
    model.add_argument("--init_from", default=None,
                       help="backbone + classifier from a GAP run folder or a weights file (.pth/.safetensors)")
    model.add_argument("--freeze", action="store_true",
                       help="the paper's protocol: backbone and classifier frozen (BatchNorm too), only the "
                            "CA stream learns")
    model.add_argument("--drop_rate", type=float, default=0.0, help="dropout before the classifier")
    return parser


def default_store_dir(model: str, pool: Optional[str], dataset: str) -> str:
    """The run folder of a run without ``--store_dir``: ``runs/<model>_<pool>``, suffixed by a ``--dataset`` other
    than the first kind."""
    return f"runs/{model}_{pool or 'gap'}" + ("" if dataset == DATASET_KINDS[0] else f"_{dataset}")


def settings_from_flags(args: argparse.Namespace) -> TrainingSettings:
    """The settings of parsed flags, training's defaults resolved: the model's (see
    :meth:`~models.settings.ModelSettings.for_training`), the run folder's, the task's criterion."""
    model = model_settings_from_flags(args).for_training()
    run = RunSettings(
        store_dir=args.store_dir or default_store_dir(model.name, args.pool, args.dataset), epochs=args.epochs,
        batch_size=args.batch_size, workers=args.workers, seed=args.seed, fixed=args.fixed, use_gpu=args.use_gpu,
        resume=args.resume, overwrite=args.overwrite, s_iterations=args.s_iterations,
        log_interval=args.log_interval)
    data = TrainingDataSettings(
        source=DataSource(args.dataset, args.root_data, args.path_list), val_root=args.val_root,
        val_list=args.val_list, val_split=args.val_split, imsize=args.imsize, crop_scale=args.crop_scale,
        fraction=args.fraction)
    loss = LossSettings(
        criterion=args.criterion or create_task(kind_task(args.dataset)).default_criterion, smoothing=args.smoothing,
        mixup=args.mixup, cutmix=args.cutmix, mixup_prob=args.mixup_prob, mixup_switch_prob=args.mixup_switch_prob)
    return TrainingSettings(
        run=run, data=data, model=model,
        optimizer=OptimizerSettings(opt=args.opt, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                                    clip_grad=args.clip_grad, ema=args.ema, ema_decay=args.ema_decay),
        schedule=ScheduleSettings(sched=args.sched, milestones=args.milestones, decay_epochs=args.decay_epochs,
                                  decay_rate=args.decay_rate, min_lr=args.min_lr, warmup_epochs=args.warmup_epochs,
                                  warmup_lr=args.warmup_lr),
        loss=loss, forward=ForwardSettings(amp=args.amp, channels_last=args.channels_last, compile=args.compile))


def flag_record(args: argparse.Namespace, settings: TrainingSettings) -> dict[str, Any]:
    """What ``args.yaml`` records: every flag as given, those whose default ``settings`` resolved as resolved."""
    model = settings.model
    return {**vars(args), "model": model.name, "heads": model.heads, "pretrained": model.pretrained,
            "store_dir": settings.run.store_dir, "criterion": settings.loss.criterion}
