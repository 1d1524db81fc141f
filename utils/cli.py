"""Pieces the three command-line scripts share: YAML configs, model flags, rebuilding a trained model."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import yaml

from models import (
    CONFIG_NAME,
    POOL_TYPES,
    create_model,
    create_model_from_config,
    load_model_weights,
    parse_model_name,
    read_config,
)
from models.classifier import CAStreamClassifier
from models.weights import MODEL_WEIGHTS_NAME, resolve_weights_path

from .data import DEFAULT_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD


def error_line(error: BaseException) -> str:
    """One line for a user error. An error raised in a DataLoader worker arrives wrapped ("Caught OSError in
    DataLoader worker process 0." and the worker's traceback): its last line is the original message."""
    text = str(error).strip()
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = text.splitlines()[-1]
        prefix = f"{type(error).__name__}: "
        return last[len(prefix):] if last.startswith(prefix) else last
    return text.splitlines()[0] if text else type(error).__name__


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


def add_model_arguments(parser: argparse.ArgumentParser, classes_default: Optional[int] = None,
                        ) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("Model settings")
    group.add_argument("--model", default=None,
                       help="timm backbone, e.g. resnet50; the reference's names resnet50_stream (= --pool ca) "
                            "and resnet50_final (= --pool ca_last) work too")
    group.add_argument("--pool", choices=POOL_TYPES, default=None,
                       help="pooling head: gap (baseline), ca (the CA stream), ca_last (one CA block on the last "
                            "feature map); default: from --model's suffix, else the run's config.json, else gap")
    group.add_argument("--heads", type=int, default=None, help="attention heads per CA block (default 1)")
    group.add_argument("--classes", type=int, default=classes_default,
                       help="number of classes (default: from the data or the run's config.json)")
    return group


def add_evaluation_data_arguments(parser: argparse.ArgumentParser, batch_help: str = "images per batch and process",
                                  ) -> argparse._ArgumentGroup:
    """The data flags recognition_imagenet.py and objrecon_imagenet.py share (same names, same meaning)."""
    data = parser.add_argument_group("Data initialization")
    data.add_argument("--root_data", default=None, help="image root; default: the built-in dataset (val split)")
    data.add_argument("--path_lbl", "--sorted_path", "--path_list", dest="path_lbl", default=None,
                      help="list file (relative/path,label per line), found in the working directory or under "
                           "--root_data; without it --root_data must hold one sub-folder per class")
    data.add_argument("--fraction", type=float, default=1.0,
                      help="seeded random fraction of the evaluated images, in (0, 1] (1 = all)")
    data.add_argument("--seed", type=int, default=0, help="seed of --fraction and of the random baseline")
    data.add_argument("--indexes", nargs="+", default=None,
                      help="dataset rows to evaluate (0-based), or a file of them; --fraction then samples them")
    data.add_argument("--batch_size", type=int, default=64, help=batch_help)
    data.add_argument("--workers", type=int, default=2, help="data loading processes per rank")
    data.add_argument("--imsize", type=int, default=None, help="evaluation size (default: the run's, else 224)")
    data.add_argument("--crop_pct", type=float, default=DEFAULT_CROP_PCT,
                      help="resize the short side to imsize / crop_pct, then centre-crop imsize")
    data.add_argument("--squash", action="store_true",
                      help="resize to imsize x imsize without cropping (as the reference evaluated)")
    return data


def add_trained_model_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Model flags of the evaluation scripts: those of training plus ``--state_root``."""
    group = add_model_arguments(parser)
    group.add_argument("--state_root", default=None,
                       help="run folder of main_INets.py (model rebuilt from its config.json) or a weights file")
    return group


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
        backbone, named_pool = parse_model_name(model_name, pool)
        if backbone != model_name:  # a _stream / _final suffix names the pooling; a plain name keeps the run's
            pool = named_pool
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
