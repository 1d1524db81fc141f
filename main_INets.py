r"""Train a GAP baseline or a CA-Stream model (one CPU, one GPU, or DDP under torchrun / SLURM).

    python main_INets.py                                  # built-in dataset, a few minutes on a CPU
    python main_INets.py --root_data /imagenet/train --path_list data/ --model resnet50 --classes 1000 \
        --epochs 90 --imsize 224 --store_dir runs/r50_gap --batch_size 64 --s_iterations 15 --fixed --seed 0 \
        --criterion CrossEntropy --use_gpu
    torchrun --nproc_per_node 4 main_INets.py ... --use_gpu
    python main_INets.py --model resnet50 --pool ca --init_from runs/r50_gap --freeze ...   # the paper's protocol
    python main_INets.py --dataset voc                    # multi-label: the built-in VOCdevkit-style set
    python main_INets.py -c configs/voc.yaml --root_data VOCdevkit/VOC2012 --use_gpu        # Pascal VOC
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

from models.cli import add_model_arguments
from utils.data import DATASET_KINDS
from utils.runtime.cli import add_config_argument, parse_args, run_or_exit
from utils.runtime.forward import AMP_DTYPES
from utils.training.recipe import CRITERIA, SCHEDULES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
                      help="imagenet: single-label (list files, image folders, the built-in shapes); voc: "
                           "multi-label Pascal VOC (a VOCdevkit year folder, or the built-in multi-label shapes)")
    data.add_argument("--root_data", default=None,
                      help="image root (--dataset voc: the VOCdevkit year folder, e.g. VOCdevkit/VOC2012); "
                           "default: the built-in generated dataset")
    data.add_argument("--path_list", default=None,
                      help="training list (path,label per line) or a folder holding train.csv [and val.csv]; "
                           "without it --root_data must hold one sub-folder per class. --dataset voc: an image "
                           "set (default train), a multi-label list (path,label label ...) or a JSON list")
    data.add_argument("--val_list", default=None,
                      help="validation list (default: val.csv or val.txt beside --path_list, a list file or a "
                           "folder; without one, --val_split of the training list). --dataset voc: an image set "
                           "(default val) or a list")
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

    add_model_arguments(parser)
    model = parser._action_groups[-1]
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


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(build_parser(), argv)
    args.model = args.model or "tf_efficientnet_lite0"
    args.heads = args.heads or 1
    if args.pretrained is None:
        from models import has_offline_weights
        args.pretrained = args.init_from is None and has_offline_weights(args.model)
    if args.resume and args.overwrite:
        raise SystemExit("error: --resume continues the run in --store_dir and --overwrite replaces it: give one")
    if not 0 <= args.val_split < 1:
        raise SystemExit(f"error: --val_split must be in [0, 1), got {args.val_split}")
    if args.store_dir is None:
        args.store_dir = f"runs/{args.model}_{args.pool or 'gap'}" + ("" if args.dataset == DATASET_KINDS[0]
                                                                         else f"_{args.dataset}")
    from utils.training.trainer import Trainer  # after parsing, so --help stays fast
    return run_or_exit(lambda parsed: Trainer(parsed).fit(), args)


if __name__ == "__main__":
    main()
