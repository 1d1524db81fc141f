"""Image and mask transforms: training augmentation, the evaluation geometry, (de)normalisation, and the
:class:`Preprocessing` settings that choose them."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

DEFAULT_CROP_PCT = 0.875  # 224 / 256, the usual ImageNet evaluation crop


def _eval_geometry(imsize: int, crop_pct: float, squash: bool, interpolation: InterpolationMode) -> list:
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    if squash:
        return [T.Resize((imsize, imsize), interpolation=interpolation, antialias=True)]
    return [
        T.Resize(math.floor(imsize / crop_pct), interpolation=interpolation, antialias=True),
        T.CenterCrop(imsize),
    ]


def build_transform(
        imsize: int,
        mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
        std: Sequence[float] = IMAGENET_DEFAULT_STD,
        train: bool = False,
        crop_pct: float = DEFAULT_CROP_PCT,
        squash: bool = False,
        scale: tuple[float, float] = (0.08, 1.0),
        interpolation: InterpolationMode = InterpolationMode.BILINEAR,
) -> T.Compose:
    """PIL image -> normalised tensor.

    train: RandomResizedCrop(imsize, scale) + horizontal flip.
    eval: resize the short side to ``imsize / crop_pct`` then centre-crop ``imsize``; with
    ``squash=True`` a plain ``Resize((imsize, imsize))`` instead (what the reference evaluated with).
    """
    if train:
        geometry = [T.RandomResizedCrop(imsize, scale=scale, interpolation=interpolation, antialias=True),
                    T.RandomHorizontalFlip()]
    else:
        geometry = _eval_geometry(imsize, crop_pct, squash, interpolation)
    return T.Compose([*geometry, T.ToTensor(), T.Normalize(mean, std)])


@dataclass(frozen=True)
class Preprocessing:
    """How a dataset's images become model inputs (:func:`build_transform`): the size ``imsize``; the evaluation
    geometry (resize the short side to ``imsize / crop_pct`` then centre-crop, or ``squash`` to a square); the
    normalisation ``mean`` / ``std`` (the model's, from its run or its weights); training's RandomResizedCrop area
    range ``crop_scale``."""

    imsize: int
    crop_pct: float = DEFAULT_CROP_PCT
    squash: bool = False
    mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN
    std: tuple[float, ...] = IMAGENET_DEFAULT_STD
    crop_scale: tuple[float, float] = (0.08, 1.0)

    def __post_init__(self) -> None:
        # a run's config.json and the flags give lists: tuples keep the settings immutable and hashable
        for name in ("mean", "std", "crop_scale"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def transform(self, train: bool) -> T.Compose:
        """PIL image -> normalised tensor: the training augmentation where ``train``, else the evaluation
        geometry."""
        return build_transform(self.imsize, self.mean, self.std, train=train, crop_pct=self.crop_pct,
                               squash=self.squash, scale=self.crop_scale)


def transform_mask(
        mask: np.ndarray,
        imsize: int,
        crop_pct: float = DEFAULT_CROP_PCT,
        squash: bool = False,
) -> torch.Tensor:
    """Apply the evaluation geometry of :func:`build_transform` to an (H, W) mask -> bool (imsize, imsize).

    Nearest-neighbour resampling, so the mask lines up with the evaluated image pixel for pixel.
    """
    geometry = T.Compose(_eval_geometry(imsize, crop_pct, squash, InterpolationMode.NEAREST))
    return geometry(torch.from_numpy(np.asarray(mask, dtype=np.uint8))[None])[0].bool()


def _channel_stats(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    # shaped (C, 1, 1) so they broadcast over (C, H, W) and (N, C, H, W) alike
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return mean_t, std_t


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Pixel space ([0, 1]) -> model input space; (C, H, W) or (N, C, H, W), any device."""
    mean_t, std_t = _channel_stats(x, mean, std)
    return (x - mean_t) / std_t


def denormalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Inverse of :func:`normalize`."""
    mean_t, std_t = _channel_stats(x, mean, std)
    return x * std_t + mean_t
