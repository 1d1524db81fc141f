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

from utils.runtime.cli import parse_args, run_or_exit
from utils.training import train
from utils.training.flags import build_parser as build_training_parser
from utils.training.flags import flag_record, settings_from_flags


def build_parser() -> argparse.ArgumentParser:
    return build_training_parser(__doc__)


def run(args: argparse.Namespace) -> dict:
    """Trains as the flags say; the last epoch's log row."""
    settings = settings_from_flags(args)
    return train(settings, record=flag_record(args, settings)).last


def main(argv: Optional[Sequence[str]] = None) -> dict:
    return run_or_exit(run, parse_args(build_parser(), argv))


if __name__ == "__main__":
    main()
