"""The evaluation protocol: every setting the faithfulness numbers depend on, recorded with every result."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, Union

import numpy as np

# The reference guards AD / AG denominators with float64 machine epsilon; scores are promoted to float64 so
# that this eps is not lost against p (float32 eps is ~1e-7).
EPS = float(np.finfo(np.float64).eps)
DEFAULT_FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
CLASS_SOURCES = {"gt": "ground-truth", "pred": "predicted"}
# Card and summary keys of multi-label evaluations: a mean is over image-class pairs (NUM_PAIRS of them, on NUM_IMAGES
# images), and PER_CLASS holds the same means over the pairs of each class.
NUM_IMAGES, NUM_PAIRS, PER_CLASS = "num_images", "num_pairs", "per_class"
# protocol entries that make two evaluations comparable (the data subset is compared through its hash)
_COMPARABLE = ("name", "pixels_per_step", "step_pixels", "blur_kernel", "blur_sigma", "deletion_substrate",
               "class_source", "masking_space", "softmax", "class_score", "pointing_tolerance",
               "perturbation_fractions", "image_size", "num_images", NUM_PAIRS)


@dataclass(frozen=True)
class EvalProtocol:
    """Every setting the faithfulness numbers depend on; ``to_dict()`` is the card stored with results.

    ``pixels_per_step=None`` means 8 image rows (the reference's ``imsize * 8``: 1792 px, 28 steps at 224).
    ``deletion_substrate``: 'zeros' of the normalised tensor (= dataset-mean grey, reference and RISE),
    'black' (pixel value 0) or 'blur' (the insertion start image). ``masking_space`` applies to AD/AI/AG:
    'pixel' = normalize(denormalize(x) * S) (reference), 'normalized' = x * S (pytorch-grad-cam).
    ``class_score``: how logits become class scores (AD/AI/AG, insertion/deletion; +/-perturbation's 'still
    recognised'): 'softmax' over the classes, or each class's 'sigmoid' (multi-label models: the classes are not
    exclusive). ``softmax=False`` scores insertion/deletion with the raw target logit instead (AD/AI/AG keep
    ``class_score``). ``pointing_tolerance``: pixels between the map's maximum and the object for a hit (Zhang et
    al. use 15).
    """
    name: str = "reference"
    pixels_per_step: Union[int, None] = None
    blur_kernel: int = 5
    blur_sigma: float = 5.0
    deletion_substrate: Literal["zeros", "black", "blur"] = "zeros"
    class_source: Literal["gt", "pred"] = "gt"
    masking_space: Literal["pixel", "normalized"] = "pixel"
    softmax: bool = True
    class_score: Literal["softmax", "sigmoid"] = "softmax"
    pointing_tolerance: float = 0.0
    perturbation_fractions: tuple[float, ...] = DEFAULT_FRACTIONS

    def step_pixels(self, height: int, width: int) -> int:
        """Pixels revealed / removed per insertion-deletion step for an image of this size."""
        return self.pixels_per_step if self.pixels_per_step is not None else 8 * width

    def to_dict(self) -> dict:
        """JSON-ready card: the fields plus the fixed choices a reader would otherwise have to guess."""
        card = asdict(self)
        card["perturbation_fractions"] = list(self.perturbation_fractions)
        card.update(
            blur_padding=f"zeros, {self.blur_kernel // 2} px, on the normalised tensor",
            blur_kernel_construction="scipy.ndimage.gaussian_filter of a centred delta (mode reflect), as RISE",
            saliency_resize="per-image min-max at input resolution, then bilinear (align_corners=False)",
            pixel_order="saliency descending, ties by increasing flat index (stable sort)",
            auc="trapezoid on [0, 1]: (sum - first/2 - last/2) / (n - 1)",
            ad_ag_eps=EPS,
            aggregation="mean over images",
        )
        return card


PROTOCOLS: dict[str, EvalProtocol] = {
    "reference": EvalProtocol(),
    # RISE's evaluation.py: one row per step at 224, 11x11 sigma-5 blur, top-1 predicted class.
    "rise": EvalProtocol(name="rise", pixels_per_step=224, blur_kernel=11, class_source="pred"),
}


def get_protocol(protocol: Union[str, EvalProtocol]) -> EvalProtocol:
    """A preset by name ('reference', 'rise') or the protocol itself."""
    if isinstance(protocol, EvalProtocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; presets: {sorted(PROTOCOLS)}")
    return PROTOCOLS[protocol]


def card_differences(card: dict, other: dict) -> list[str]:
    """Entries that differ between two protocol cards (data subset, metric settings, image size, class source)."""
    differences = [key for key in _COMPARABLE if card.get(key) != other.get(key)]
    if card.get("data", {}).get("indices_sha256") != other.get("data", {}).get("indices_sha256"):
        differences.append("data.indices_sha256")
    return differences
