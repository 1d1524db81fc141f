"""Pieces the three command-line scripts share: YAML configs, model flags, rebuilding a trained model."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch
import yaml

from models import (CONFIG_NAME, POOL_TYPES, create_model, create_model_from_config, load_model_weights,
                    parse_model_name, read_config)
from models.classifier import CAStreamClassifier
from models.weights import MODEL_WEIGHTS_NAME, resolve_weights_path
from .data import IMAGENET_MEAN, IMAGENET_STD


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", default=None,
                        help="YAML file of flag values (keys = flag names without dashes); flags given on the "
                             "command line override it")


def parse_args(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parses ``argv`` with the values of ``--config`` as defaults, so command-line flags win."""
    argv = sys.argv[1:] if argv is None else list(argv)
    pre, _ = parser.parse_known_args(argv)
    if getattr(pre, "config", None):
        path = Path(pre.config)
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            parser.error(f"--config {path}: {error}".splitlines()[0])
        if not isinstance(values, dict):
            parser.error(f"--config {path}: expected a mapping of flag names to values")
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(values) - known)
        if unknown:
            parser.error(f"--config {path}: unknown keys {', '.join(unknown)}")
        parser.set_defaults(**values)
    return parser.parse_args(argv)


def add_model_arguments(parser: argparse.ArgumentParser, classes_default: Optional[int] = None) -> None:
    group = parser.add_argument_group("Model settings")
    group.add_argument("--model", default=None,
                       help="timm backbone, e.g. resnet50; the reference's names resnet50_stream (= --pool ca) "
                            "and resnet50_final (= --pool ca_last) work too")
    group.add_argument("--pool", choices=POOL_TYPES, default=None,
                       help="pooling head: gap (baseline), ca (the CA stream), ca_last (one CA block on the last "
                            "feature map); default: from --model's suffix, else gap")
    group.add_argument("--heads", type=int, default=None, help="attention heads per CA block (default 1)")
    group.add_argument("--classes", type=int, default=classes_default,
                       help="number of classes (default: from the data or the run's config.json)")


def load_trained_model(
        state_root: Optional[str],
        model_name: Optional[str] = None,
        pool: Optional[str] = None,
        classes: Optional[int] = None,
        heads: Optional[int] = None,
        pretrained: bool = False,
) -> tuple[CAStreamClassifier, dict]:
    """Rebuilds a model for evaluation and returns it with its config (preprocessing included).

    ``state_root`` is a run folder of ``main_INets.py`` (its ``config.json`` + ``model.safetensors``) or a
    weights file (a ``config.json`` next to it is used when present). Flags override the config; a
    weights file of another architecture or class count is refused with one line.
    """
    config: dict = {}
    weights = None
    if state_root is not None:
        weights = resolve_weights_path(state_root)
        if (weights.parent / CONFIG_NAME).is_file():
            config = read_config(weights.parent)
    elif model_name is None:
        raise ValueError("give --state_root (a run folder or weights file) or --model")
    if model_name is not None:
        backbone, pool = parse_model_name(model_name, pool)
        config["backbone"] = backbone
    if "backbone" not in config:
        raise ValueError(f"{state_root}: no {CONFIG_NAME} next to it, so --model is needed")
    config["pool"] = pool or config.get("pool", "gap")
    config["heads"] = heads or config.get("heads", 1)
    if classes is not None and config.get("classes") not in (None, classes) and weights is not None \
            and weights.name == MODEL_WEIGHTS_NAME:
        raise ValueError(f"--classes {classes}, but {weights.parent / CONFIG_NAME} says the run was trained with "
                         f"{config['classes']} classes")
    config["classes"] = classes or config.get("classes", 1000)
    config.setdefault("mean", list(IMAGENET_MEAN))
    config.setdefault("std", list(IMAGENET_STD))
    if weights is None:
        model = create_model(config["backbone"], pool=config["pool"], num_classes=config["classes"],
                             heads=config["heads"], pretrained=pretrained)
    else:
        model = create_model_from_config(config)
        load_model_weights(model, weights)
    return model.eval(), config


def select_device(use_gpu: bool) -> torch.device:
    if use_gpu and not torch.cuda.is_available():
        raise RuntimeError("--use_gpu given but CUDA is not available")
    return torch.device("cuda" if use_gpu else "cpu")
