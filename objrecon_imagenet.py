"""Interpretability metrics of saliency maps: Average Drop / Increase / Gain, insertion / deletion (RISE),
+/- perturbation and, where object masks exist (the built-in dataset) or boxes (VOC), the (energy) pointing game.

Reads the maps that ``recognition_imagenet.py --salient`` saved (STORE_DIR/saliency_<method>.npz) or computes
them (--method, --compute); writes STORE_DIR/metrics.csv (per image; multi-label models: per image-class pair,
scored with the class's sigmoid), summary.json (means x100, per class too for multi-label models, + the protocol
card), curves_*.png and report.html (tables, curves and a gallery of the images with each method's map: open it
in a browser); with --compare also compare.html.

    python objrecon_imagenet.py --state_root [path_model] --store_dir [path_report] --root_data [root for data] \\
        --path_lbl [path for labels] --batch_size 60 --model [model] --use_gpu --classes [#Classes]
    python objrecon_imagenet.py --state_root runs/ca --store_dir Evaluation/ca --method gradcam attention
    python objrecon_imagenet.py ... --protocol rise                         # RISE's settings
    python objrecon_imagenet.py ... --store_dir Evaluation/ca --compare Evaluation/gap   # GAP vs CA
    torchrun --nproc_per_node 4 objrecon_imagenet.py ... --use_gpu
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from utils.evaluation.flags import (
    add_evaluation_data_arguments,
    add_forward_arguments,
    add_plugin_argument,
    add_pointing_argument,
    add_prediction_arguments,
    add_resume_arguments,
    add_trained_model_arguments,
    evaluation_settings,
    with_plugins,
)
from utils.evaluation.settings import DEFAULT_METHOD
from utils.explain import ENGINES
from utils.faithfulness import CLASS_SOURCES, PROTOCOLS
from utils.reports.report import DEFAULT_GALLERY_IMAGES
from utils.runtime.cli import add_config_argument, parse_args, run_or_exit


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(parser)
    add_plugin_argument(parser)

    ev = parser.add_argument_group("Evaluation settings")
    ev.add_argument("--store_dir", default=None,
                    help="where metrics.csv, summary.json and the plots go (default: Evaluation/<run folder name>, "
                         "as recognition_imagenet.py)")
    ev.add_argument("--saliency_dir", default=None,
                    help="folder with recognition_imagenet.py's saliency_<method>.npz (default: --store_dir; "
                         "when given, every --method must have its file there unless --compute)")
    ev.add_argument("--method", nargs="+", default=None,
                    help="saliency methods (e.g. gradcam gradcam++ scorecam attention); each is read from its "
                         "saved file when there is one, else computed. Default: every saliency_*.npz found")
    ev.add_argument("--compute", action="store_true",
                    help=f"compute the maps even when saved files exist (default method: {DEFAULT_METHOD})")
    ev.add_argument("--engine", choices=ENGINES, default="auto",
                    help="saliency engine when computing: auto = this project's fast paths where they exist, "
                         "package = pytorch-grad-cam (see utils/explain)")
    ev.add_argument("--save_maps", action="store_true",
                    help="also write computed maps as STORE_DIR/saliency_<method>.npz (the recognition format)")
    ev.add_argument("--protocol", choices=sorted(PROTOCOLS), default="reference",
                    help="reference: 8 image rows per insertion/deletion step, 5x5 blur, ground-truth class; "
                         "rise: 224 pixels per step, 11x11 blur, predicted class")
    ev.add_argument("--class_source", choices=tuple(CLASS_SOURCES), default=None,
                    help="class to explain and score (default: the protocol's; a saliency file's own when maps "
                         "are read from one)")
    ev.add_argument("--pred", action="store_const", const="pred", dest="class_source",
                    help="same as --class_source pred")
    add_prediction_arguments(ev)
    add_pointing_argument(ev)
    add_resume_arguments(ev)
    add_forward_arguments(ev, amp_help="autocast dtype of the metric forwards (bf16: ~2-3x faster, curves within "
                                       "1e-2; fp16: CUDA only)")
    ev.add_argument("--label", default=None, help="name of this run in tables and plots (default: its pooling)")
    ev.add_argument("--compare", default=None,
                    help="another objrecon store_dir (or its summary.json), e.g. the GAP run when this is the CA "
                         "run: plotted and tabulated against this one, side by side in compare.html")
    ev.add_argument("--report_images", type=int, default=DEFAULT_GALLERY_IMAGES,
                    help="images in the gallery of report.html, evenly spaced over the evaluated rows (the tables "
                         "and curves cover all of them); 0: no report.html")

    add_evaluation_data_arguments(parser, batch_help="images per batch, also the bound on images x steps "
                                                     "forwarded at once; a chunk that runs out of GPU memory is "
                                                     "split, so on a GPU give the largest you like")
    add_trained_model_arguments(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Runs the flags' evaluation and returns its summary (summary.json's content; {} on ranks other than 0)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(build_parser(), argv)
    from utils.evaluation.objrecon import evaluate  # after parsing, so --help stays fast

    def run(flags: argparse.Namespace) -> dict:
        result = evaluate(evaluation_settings(flags, argv))
        return {} if result is None else result.summary

    return run_or_exit(with_plugins(run), args)


if __name__ == "__main__":
    main()
