"""Faithfulness and localisation metrics of saliency maps, each declared once (:mod:`.metrics`): Average Drop /
Increase / Gain, insertion / deletion (RISE), +/- perturbation (Chefer et al.), the pointing games; the protocol card
that makes numbers comparable."""
from .batch import evaluate_batch, predict
from .causal import auc, blur, causal_metric, gaussian_kernel
from .confidence import average_drop_increase_gain, drop_increase_gain
from .inputs import pixel_rank, prepare_saliency
from .localization import energy_pointing_game, pointing_game
from .metrics import CURVE_METRICS, METRIC_KEYS, METRICS, Metric, metric
from .perturbation import perturbation_curve
from .protocol import CLASS_SOURCES, DEFAULT_FRACTIONS, EPS, PROTOCOLS, EvalProtocol, card_differences, get_protocol
from .summary import format_table, image_metrics, summarize

__all__ = [
    "CLASS_SOURCES", "CURVE_METRICS", "DEFAULT_FRACTIONS", "EPS", "EvalProtocol", "METRICS", "METRIC_KEYS", "Metric",
    "PROTOCOLS", "auc", "average_drop_increase_gain", "blur", "card_differences", "causal_metric", "drop_increase_gain",
    "energy_pointing_game", "evaluate_batch", "format_table", "gaussian_kernel", "get_protocol", "image_metrics",
    "metric", "perturbation_curve", "pixel_rank", "pointing_game", "predict", "prepare_saliency", "summarize",
]
