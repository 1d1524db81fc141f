"""The flags recognition_imagenet.py and objrecon_imagenet.py share (same names, same meaning), and the one place
that reads them: :func:`recognition_settings` and :func:`evaluation_settings` turn the parsed flags into the
pipelines' frozen settings (:mod:`.settings`)."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from models.cli import add_model_arguments, model_settings_from_flags
from utils.data import DATASET_KINDS, DEFAULT_CROP_PCT
from utils.runtime.forward import AMP_DTYPES, ForwardSettings
from utils.task import PRED_THRESHOLD

from .rows import parse_indexes
from .settings import (
    DEFAULT_METHOD,
    MULTI_LABEL_TOLERANCE,
    DataSubset,
    EvaluatedData,
    EvaluationSettings,
    RecognitionSettings,
    Saliency,
    TrainedModel,
)
from .shards import DEFAULT_SHARD_BATCHES


def add_evaluation_data_arguments(parser: argparse.ArgumentParser, batch_help: str = "images per batch and process",
                                  ) -> argparse._ArgumentGroup:
    data = parser.add_argument_group("Data initialization")
    data.add_argument("--dataset", choices=DATASET_KINDS, default=None,
                      help="imagenet: single-label files (lists, image folders, ImageNet's layout); voc: "
                           "multi-label Pascal VOC (a VOCdevkit year folder, or the built-in multi-label set); wds: "
                           "WebDataset tar shards; hf: a Hugging Face dataset saved on disk (docs/data-formats.md). "
                           "Default: the run's (its config.json records the task)")
    data.add_argument("--root_data", default=None,
                      help="image root (--dataset voc: the VOCdevkit year folder; wds: the folder of .tar shards; "
                           "hf: the save_to_disk folder); default: the built-in dataset (val split)")
    data.add_argument("--path_lbl", "--sorted_path", "--path_list", dest="path_lbl", default=None,
                      help="list file (relative/path,label per line), found in the working directory or under "
                           "--root_data; without it --root_data must hold one sub-folder per class or ImageNet's "
                           "val/. --dataset voc: an image set (default val), a multi-label list or the reference's "
                           "JSON list; wds: a sub-folder or glob of the shards (default val/ where there is one); "
                           "hf: a split (default validation, val or test)")
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


def add_pointing_argument(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--pointing_tolerance", type=float, default=None,
                       help="pointing game tolerance in pixels of the evaluated image, where masks or boxes exist "
                            f"(default: {MULTI_LABEL_TOLERANCE:g} for multi-label models, as Zhang et al. on VOC; "
                            "else 0)")


def add_forward_arguments(group: argparse._ArgumentGroup, amp_help: str) -> None:
    """Where and how the model's forwards run (see :class:`~utils.runtime.forward.ForwardSettings`)."""
    group.add_argument("--use_gpu", action="store_true", help="run on CUDA (cuda:LOCAL_RANK under torchrun/SLURM)")
    group.add_argument("--amp", choices=tuple(AMP_DTYPES), default="none", help=amp_help)
    group.add_argument("--channels_last", action="store_true",
                       help="NHWC model weights and inputs: faster convolutions, the same results to rounding")
    group.add_argument("--compile", action="store_true",
                       help="torch.compile the backbone (compiled on the first batch of each shape: pays on "
                            "long runs; see docs/performance.md)")


def add_resume_arguments(group: argparse._ArgumentGroup) -> None:
    """``--resume`` / ``--shard_batches``: the work is committed in shards of whole batches (:mod:`.shards`)."""
    group.add_argument("--resume", action="store_true",
                       help="continue the unfinished run of this script in --store_dir (killed or pre-empted) from "
                            "its committed shards, which must have been made with the same flags (else one line "
                            "naming what differs); none committed: a fresh start. Without --resume an unfinished "
                            "run's shards are removed")
    group.add_argument("--shard_batches", type=int, default=DEFAULT_SHARD_BATCHES,
                       help="batches per committed shard (a killed run loses at most one shard per rank)")


def add_prediction_arguments(group: argparse._ArgumentGroup) -> None:
    """``--pred_threshold`` / ``--pred_topk``: the classes explained with ``--pred`` for multi-label models."""
    group.add_argument("--pred_threshold", type=float, default=PRED_THRESHOLD,
                       help="multi-label models: --pred explains every class whose sigmoid exceeds this")
    group.add_argument("--pred_topk", type=int, default=None,
                       help="multi-label models: --pred explains the K classes of highest score instead")


def trained_model(args: argparse.Namespace) -> TrainedModel:
    return TrainedModel(args.state_root, model_settings_from_flags(args))


def evaluated_data(args: argparse.Namespace) -> EvaluatedData:
    return EvaluatedData(kind=args.dataset, root=args.root_data, listing=args.path_lbl, imsize=args.imsize,
                         crop_pct=args.crop_pct, squash=args.squash,
                         subset=DataSubset(args.fraction, args.seed, parse_indexes(args.indexes)),
                         batch_size=args.batch_size, workers=args.workers)


def forward_settings(args: argparse.Namespace) -> ForwardSettings:
    """The forward flags (the device is chosen when the run starts: ``--use_gpu``); a chunk is a batch."""
    return ForwardSettings(amp=args.amp, channels_last=args.channels_last, chunk=args.batch_size,
                           compile=args.compile)


def recognition_settings(args: argparse.Namespace) -> RecognitionSettings:
    """recognition_imagenet.py's flags as settings. Naming a method asks for its maps; ``--salient`` alone means
    the default method."""
    methods = tuple(args.method or [DEFAULT_METHOD]) if args.salient or args.method else ()
    return RecognitionSettings(
        trained_model(args), evaluated_data(args),
        Saliency(methods, engine=args.engine, class_source="pred" if args.pred else "gt",
                 pred_threshold=args.pred_threshold, pred_topk=args.pred_topk),
        forward_settings(args), use_gpu=args.use_gpu, store_dir=args.store_dir, report=args.report,
        n_overlays=args.n_overlays, ap=args.ap, pointing_tolerance=args.pointing_tolerance, resume=args.resume,
        shard_batches=args.shard_batches)


def evaluation_settings(args: argparse.Namespace, argv: Optional[Sequence[str]] = None) -> EvaluationSettings:
    """objrecon_imagenet.py's flags as settings; ``argv``, the command line, is recorded in summary.json."""
    return EvaluationSettings(
        trained_model(args), evaluated_data(args),
        Saliency(args.method, engine=args.engine, class_source=args.class_source,
                 pred_threshold=args.pred_threshold, pred_topk=args.pred_topk),
        forward_settings(args), use_gpu=args.use_gpu, protocol=args.protocol, store_dir=args.store_dir,
        saliency_dir=args.saliency_dir, compute=args.compute, save_maps=args.save_maps, label=args.label,
        compare=args.compare, report_images=args.report_images, pointing_tolerance=args.pointing_tolerance,
        argv=argv, resume=args.resume, shard_batches=args.shard_batches)


def add_plugin_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugin", action="append", default=None, metavar="MODULE",
                        help="a Python module (a dotted name on the import path, or a .py file) imported before the "
                             "run, so that what it registers applies, e.g. a saliency method "
                             "(utils.explain.register_method) or a metric (utils.faithfulness.register_metric; see "
                             "docs/extending.md); repeatable")


def import_plugins(plugins: Optional[Sequence[str]]) -> None:
    """Imports each ``--plugin`` (a module name, or the path of a .py file); one that cannot be found is one line."""
    for plugin in plugins or ():
        path = Path(plugin)
        if path.suffix != ".py":
            try:
                importlib.import_module(plugin)
            except ModuleNotFoundError as error:
                raise ValueError(f"--plugin {plugin}: {error} (give a module on the import path or a .py file)"
                                 ) from None
            continue
        if not path.is_file():
            raise ValueError(f"--plugin {plugin}: no such file")
        loaded = sys.modules.get(path.stem)
        if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() == path.resolve():
            continue  # imported by an earlier run of this process: its registrations stand
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[path.stem]
            raise


def with_plugins(run: Callable[[argparse.Namespace], dict]) -> Callable[[argparse.Namespace], dict]:
    """``run`` preceded by :func:`import_plugins` of the flags' ``--plugin`` modules."""
    def run_with_plugins(args: argparse.Namespace) -> dict:
        import_plugins(args.plugin)
        return run(args)
    return run_with_plugins
