r"""Classification and saliency generation: accuracy of a trained model and its explanations.

    python recognition_imagenet.py --state_root runs/ca --salient --method gradcam attention random
    python recognition_imagenet.py --state_root runs/voc_ca --salient     # multi-label: mAP, a map per class present
    python recognition_imagenet.py --state_root [run folder or weights file] --store_dir [path_to_evaluate] \
        --root_data [root for data] --path_lbl [path for labels] --batch_size 64 --model resnet50 --use_gpu \
        --classes 1000 --fraction 0.1 --salient
    torchrun --nproc_per_node 4 recognition_imagenet.py ... --use_gpu

Without data flags it runs on the built-in dataset's validation list (a multi-label run: the built-in multi-label
set's val image set). Outputs (rank 0): predictions.csv, classification.json (top-1 / top-5, per-class accuracy;
multi-label: mAP and per-class AP; pointing game where object masks or boxes exist), saliency_<method>.npz (maps at
native resolution, one per image-class pair, in dataset order) and overlays.png.
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

from utils.evaluation.flags import (
    add_evaluation_data_arguments,
    add_forward_arguments,
    add_plugin_argument,
    add_pointing_argument,
    add_prediction_arguments,
    add_resume_arguments,
    add_trained_model_arguments,
    recognition_settings,
    with_plugins,
)
from utils.explain import ENGINES
from utils.faithfulness import AP_DEFINITIONS, VOC_AP
from utils.runtime.cli import add_config_argument, parse_args, run_or_exit


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(parser)
    add_plugin_argument(parser)

    evaluation = parser.add_argument_group("Evaluation settings")
    evaluation.add_argument("--salient", action="store_true",
                            help="generate saliency maps (else: accuracy only, unless --method is given)")
    evaluation.add_argument("--method", nargs="+", default=None,
                            help="one or several attributions, maps written for each (implies --salient; default "
                                 "with --salient: gradcam): gradcam, gradcam++, xgradcam, hirescam, layercam, "
                                 "scorecam, ... (every pytorch-grad-cam CAM), attention, attention_mean, "
                                 "attention_product (the CA stream's own maps), random (baseline)")
    evaluation.add_argument("--engine", choices=ENGINES, default="auto",
                            help="gradient CAMs, Score-CAM, Ablation-CAM, FullGrad: auto = this project's fast "
                                 "paths (same maps, forwards batched on the device), package = pytorch-grad-cam")
    add_forward_arguments(evaluation, amp_help="autocast dtype of the classification forward, which the fast "
                                               "gradient CAMs and the attention maps reuse (fp16: CUDA only)")
    evaluation.add_argument("--ap", choices=tuple(AP_DEFINITIONS), default=VOC_AP,
                            help="multi-label AP: voc, the VOC devkit's all-point interpolated AP (VOC2010+, what "
                                 "published VOC numbers use), or sklearn, scikit-learn's non-interpolated "
                                 "average_precision_score")
    evaluation.add_argument("--store_dir", default=None, help="output folder (default: Evaluation/<run folder name>)")
    evaluation.add_argument("--report", default=None,
                            help="classification report JSON (default: STORE_DIR/classification.json)")
    evaluation.add_argument("--n_overlays", type=int, default=8,
                            help="images drawn in overlays.png with each method's map (0 = none)")
    add_pointing_argument(evaluation)
    add_resume_arguments(evaluation)

    data = add_evaluation_data_arguments(parser)
    data.add_argument("--pred", action="store_true",
                      help="explain the predicted class (default: the ground-truth label; multi-label models: "
                           "every class present, or with --pred those of --pred_threshold / --pred_topk)")
    add_prediction_arguments(data)
    model = add_trained_model_arguments(parser)
    model.add_argument("--pretrained", action="store_true",
                       help="without --state_root: ImageNet weights of --model (EfficientNet-Lite0 offline)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Runs the flags' evaluation and returns its report (classification.json's content)."""
    args = parse_args(build_parser(), argv)
    from utils.evaluation.recognition import recognise  # after parsing, so --help stays fast
    return run_or_exit(with_plugins(lambda flags: recognise(recognition_settings(flags)).report), args)


if __name__ == "__main__":
    main()
