"""The choice of a model as one frozen settings object (the model flags of the scripts, or a notebook's values)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from .classifier import POOL_TYPES

# The default job's backbone: its ImageNet weights ship in an installed package, so it fine-tunes offline.
DEFAULT_MODEL = "tf_efficientnet_lite0"


@dataclass(frozen=True)
class ModelSettings:
    """Which network, and what it starts from.

    Args:
        name: ``--model``, a timm CNN (``resnet50``); the suffixes ``_stream`` / ``_final`` name ``pool`` ca /
            ca_last. None: :data:`DEFAULT_MODEL` for training, the run's config.json for evaluation.
        pool: ``--pool``, one of :data:`~models.POOL_TYPES`; None: from ``name``'s suffix, else the run's, else gap.
        heads: ``--heads``, attention heads per CA block; None (or 0): 1, or the run's.
        classes: ``--classes``; None (or 0): from the data, or the run's config.json.
        pretrained: ``--pretrained``, start from ImageNet weights; None: where they are available offline and
            there is no ``init_from`` (see :meth:`for_training`).
        init_from: ``--init_from``, backbone + classifier from a GAP run folder or a weights file.
        freeze: ``--freeze``, backbone and classifier frozen: only the CA stream learns (the paper's protocol).
        drop_rate: ``--drop_rate``, dropout before the classifier.
    """

    name: Optional[str] = None
    pool: Optional[str] = None
    heads: Optional[int] = None
    classes: Optional[int] = None
    pretrained: Optional[bool] = None
    init_from: Optional[str] = None
    freeze: bool = False
    drop_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.pool is not None and self.pool not in POOL_TYPES:
            raise ValueError(f"--pool {self.pool}: expected one of {', '.join(POOL_TYPES)}")
        # 0 is refused rather than read as "the default": a typo must not silently become 1 head or the run's classes
        for flag, value in (("--heads", self.heads), ("--classes", self.classes)):
            if value is not None and value < 1:
                raise ValueError(f"{flag} must be >= 1, got {value}")

    def for_training(self) -> ModelSettings:
        """These settings with training's defaults filled in: :data:`DEFAULT_MODEL`, one head, and ImageNet weights
        where they are available offline and the run does not start from ``init_from``."""
        name = self.name or DEFAULT_MODEL
        pretrained = self.pretrained
        if pretrained is None:
            from . import has_offline_weights  # the package imports this module

            pretrained = self.init_from is None and has_offline_weights(name)
        return replace(self, name=name, heads=self.heads or 1, pretrained=pretrained)
