r"""Classification and saliency generation: accuracy of a trained model and its explanations.

    python recognition_imagenet.py --state_root runs/ca --salient --method gradcam attention random
    python recognition_imagenet.py --state_root [run folder or weights file] --store_dir [path_to_evaluate] \
        --root_data [root for data] --path_lbl [path for labels] --batch_size 64 --model resnet50 --use_gpu \
        --classes 1000 --fraction 0.1 --salient
    torchrun --nproc_per_node 4 recognition_imagenet.py ... --use_gpu

Without data flags it runs on the built-in dataset's validation list. Outputs (rank 0): predictions.csv,
classification.json (top-1 / top-5, per-class accuracy, pointing game where object masks exist),
saliency_<method>.npz (maps at native resolution, rows aligned with predictions.csv) and overlays.png.
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

from utils.cli import add_config_argument, add_model_arguments, parse_args
from utils.data import DEFAULT_CROP_PCT
from utils.saliency import ENGINES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(parser)

    evaluation = parser.add_argument_group("Evaluation settings")
    evaluation.add_argument("--salient", action="store_true", help="generate saliency maps (else: accuracy only)")
    evaluation.add_argument("--method", nargs="+", default=["gradcam"],
                            help="one or several attributions: gradcam, gradcam++, xgradcam, hirescam, layercam, "
                                 "scorecam, ... (every pytorch-grad-cam CAM), attention, attention_mean, "
                                 "attention_product (the CA stream's own maps), random (baseline)")
    evaluation.add_argument("--engine", choices=ENGINES, default="auto",
                            help="gradient CAMs: auto = this project's fast path, package = pytorch-grad-cam")
    evaluation.add_argument("--use_gpu", action="store_true", help="run on CUDA (cuda:LOCAL_RANK under DDP)")
    evaluation.add_argument("--store_dir", default=None, help="output folder (default: Evaluation/<run folder name>)")
    evaluation.add_argument("--report", default=None,
                            help="classification report JSON (default: STORE_DIR/classification.json)")
    evaluation.add_argument("--n_overlays", type=int, default=8,
                            help="images drawn in overlays.png with each method's map (0 = none)")
    evaluation.add_argument("--pointing_tolerance", type=float, default=0.0,
                            help="pointing game tolerance in pixels of the evaluated image (where masks exist)")

    data = parser.add_argument_group("Data initialization")
    data.add_argument("--root_data", default=None, help="image root; default: the built-in generated dataset")
    data.add_argument("--path_lbl", "--sorted_path", "--path_list", dest="path_lbl", default=None,
                      help="list file (relative/path,label per line), found in the working directory or under "
                           "--root_data; without it --root_data must hold one sub-folder per class")
    data.add_argument("--fraction", type=float, default=1.0,
                      help="seeded random fraction of the evaluated images, in (0, 1] (1 = all)")
    data.add_argument("--seed", type=int, default=0, help="seed of --fraction and of the random baseline")
    data.add_argument("--indexes", nargs="+", default=None,
                      help="dataset rows to evaluate (0-based), or a file of them")
    data.add_argument("--batch_size", type=int, default=64, help="batch size per process")
    data.add_argument("--workers", type=int, default=2, help="data loading processes per rank")
    data.add_argument("--pred", action="store_true",
                      help="explain the predicted class (default: the ground-truth label)")
    data.add_argument("--imsize", type=int, default=None, help="evaluation size (default: the run's, else 224)")
    data.add_argument("--crop_pct", type=float, default=DEFAULT_CROP_PCT,
                      help="resize the short side to imsize / crop_pct, then centre-crop imsize")
    data.add_argument("--squash", action="store_true",
                      help="resize to imsize x imsize without cropping (as the reference evaluated)")

    add_model_arguments(parser)
    model = parser._action_groups[-1]
    model.add_argument("--state_root", default=None,
                       help="run folder of main_INets.py (model rebuilt from its config.json) or a weights file")
    model.add_argument("--pretrained", action="store_true",
                       help="without --state_root: ImageNet weights of --model (EfficientNet-Lite0 offline)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(build_parser(), argv)
    from utils.recognition import run_recognition  # after parsing, so --help stays fast
    try:
        return run_recognition(args)
    except (ValueError, OSError) as error:
        raise SystemExit(f"error: {str(error).splitlines()[0] if str(error) else type(error).__name__}") from None


if __name__ == "__main__":
    main()
