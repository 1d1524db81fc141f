"""The command-line flags that choose a model (the three scripts share them)."""
from __future__ import annotations

import argparse

from .classifier import POOL_TYPES
from .settings import ModelSettings


def add_model_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The flags that choose a model, shared by the three scripts."""
    group = parser.add_argument_group("Model settings")
    group.add_argument("--model", default=None,
                       help="timm backbone, e.g. resnet50; the reference's names resnet50_stream (= --pool ca) "
                            "and resnet50_final (= --pool ca_last) work too")
    group.add_argument("--pool", choices=POOL_TYPES, default=None,
                       help="pooling head: gap (baseline), ca (the CA stream), ca_last (one CA block on the last "
                            "feature map); default: from --model's suffix, else the run's config.json, else gap")
    group.add_argument("--heads", type=int, default=None, help="attention heads per CA block (default 1)")
    group.add_argument("--classes", type=int, default=None,
                       help="number of classes (default: from the data or the run's config.json)")
    return group


def model_settings_from_flags(args: argparse.Namespace) -> ModelSettings:
    """The model settings of parsed flags: those of :func:`add_model_arguments`, and the training flags
    (``--pretrained``, ``--init_from``, ``--freeze``, ``--drop_rate``) where the script has them."""
    return ModelSettings(name=args.model, pool=args.pool, heads=args.heads, classes=args.classes,
                         pretrained=getattr(args, "pretrained", None), init_from=getattr(args, "init_from", None),
                         freeze=getattr(args, "freeze", False), drop_rate=getattr(args, "drop_rate", 0.0))
