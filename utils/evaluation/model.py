"""The model an evaluation scores: rebuilt from a run folder (or a weights file) with the flags' overrides."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from models import create_model, create_model_from_config, data_config, load_model_weights, parse_model_name
from models.classifier import CAStreamClassifier
from models.weights import non_finite_weight, resolve_weights_path
from utils.data import SINGLE_LABEL
from utils.runtime.layout import RunFolder


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
        run = RunFolder(weights.parent)
        if run.config.is_file():
            # runs saved before the task was recorded are single-label
            config = {"task": SINGLE_LABEL, **run.read_config()}
    elif model_name is None:
        raise ValueError("give --state_root (a run folder or weights file) or --model")
    if model_name is not None:
        backbone, named_pool = parse_model_name(model_name, pool)
        if backbone != model_name:  # a _stream / _final suffix names the pooling; a plain name keeps the run's
            pool = named_pool
        config["backbone"] = backbone
    if "backbone" not in config:
        raise ValueError(f"{state_root}: no {RunFolder.CONFIG} next to it, so --model is needed")
    config["pool"] = pool or config.get("pool", "gap")
    config["heads"] = heads or config.get("heads", 1)
    if classes is not None and config.get("classes") not in (None, classes) and weights is not None \
            and weights.name == RunFolder.WEIGHTS:
        raise ValueError(f"--classes {classes}, but {RunFolder(weights.parent).config} says the run was trained with "
                         f"{config['classes']} classes")
    config["classes"] = classes or config.get("classes", 1000)
    if weights is None:
        model = create_model(config["backbone"], pool=config["pool"], num_classes=config["classes"],
                             heads=config["heads"], pretrained=pretrained)
    else:
        model = create_model_from_config(config)
        load_model_weights(model, weights)
        _check_finite(model, weights)
    if "mean" not in config:  # weights without a run's config: the normalisation their backbone was trained with
        config["mean"], config["std"] = data_config(config["backbone"], pretrained=pretrained and weights is None)
    return model.eval(), config


def _check_finite(model: CAStreamClassifier, weights: Path) -> None:
    """Weights of a diverged training would score as a constant guess (or a table of NaN): refused."""
    name = non_finite_weight(model)
    if name is not None:
        raise ValueError(f"{weights}: the weight {name} holds NaN or inf (a diverged training?); evaluate a run "
                         f"whose weights are finite")


def default_store_dir(state_root: Optional[str], model: Optional[str]) -> Path:
    """``Evaluation/<run folder name>`` (a weights file: its folder's name when it has a config.json)."""
    if state_root is None:
        return Path("Evaluation") / (model or "model")
    root = Path(state_root)
    if root.is_dir():
        return Path("Evaluation") / root.resolve().name
    if RunFolder(root.parent).config.is_file():
        return Path("Evaluation") / root.resolve().parent.name
    return Path("Evaluation") / root.stem
