"""Faithfulness and localisation metrics of saliency maps, each declared once with its computation
(:mod:`.metrics`; :func:`register_metric` adds one from outside): Average Drop / Increase / Gain, insertion /
deletion (RISE), +/- perturbation (Chefer et al.), the pointing games; the protocol card that makes numbers
comparable; and the average precision that scores multi-label class scores (:mod:`.precision`)."""
from .batch import MetricBatch, evaluate_batch, predict
from .calibration import CALIBRATION_DEFINITION, ECE_BINS, expected_calibration_error, sigmoid_calibration
from .causal import auc, blur, causal_metric, gaussian_kernel
from .confidence import average_drop_increase_gain, drop_increase_gain
from .inputs import CLASS_SCORES, class_scores, pixel_rank, prepare_saliency
from .localization import energy_pointing_game, pointing_game
from .metrics import (
    CURVE_METRICS,
    MEAN_AP,
    METRIC_KEYS,
    METRICS,
    LocalizationMetric,
    Metric,
    localization_metrics,
    metric,
    register_metric,
    unregister_metric,
)
from .paired import PairedDifference, paired_difference
from .perturbation import perturbation_curve
from .precision import (
    AP_DEFINITIONS,
    VOC_AP,
    average_precision,
    check_ap_definition,
    class_average_precision,
    describe_ap,
    mean_average_precision,
)
from .protocol import (
    CLASS_SOURCES,
    DEFAULT_FRACTIONS,
    EPS,
    NUM_IMAGES,
    NUM_PAIRS,
    PER_CLASS,
    PROTOCOLS,
    EvalProtocol,
    card_differences,
    get_protocol,
)
from .summary import format_table, image_metrics, summarize

__all__ = [
    "AP_DEFINITIONS", "VOC_AP", "check_ap_definition", "describe_ap",
    "CALIBRATION_DEFINITION", "CLASS_SCORES", "CLASS_SOURCES", "CURVE_METRICS", "DEFAULT_FRACTIONS", "ECE_BINS",
    "EPS", "MEAN_AP", "METRICS", "METRIC_KEYS", "NUM_IMAGES", "NUM_PAIRS", "PER_CLASS", "PROTOCOLS", "EvalProtocol",
    "LocalizationMetric", "Metric", "MetricBatch", "PairedDifference", "auc", "average_drop_increase_gain",
    "average_precision", "blur", "card_differences", "causal_metric", "class_average_precision", "class_scores",
    "drop_increase_gain", "energy_pointing_game", "evaluate_batch", "expected_calibration_error", "format_table",
    "gaussian_kernel", "get_protocol", "image_metrics", "localization_metrics", "mean_average_precision", "metric",
    "paired_difference", "perturbation_curve", "pixel_rank", "pointing_game", "predict", "prepare_saliency",
    "register_metric", "sigmoid_calibration", "summarize", "unregister_metric",
]
