"""The stream's recipe chosen on images held out of the *training* set, never on the validation images that the
comparison tables score.

A fifth of the training list (seeded) is held out. GAP models are fine-tuned on the rest for each of
``--gap_epochs``; the one of ``--base_epochs`` is the frozen base of every stream recipe (learning rate, epochs,
weight decay, warm-up). Each run's per-epoch curves (held-out accuracy and loss, training loss) go to
``curves.csv`` and ``curves.png``; ``sweep.md`` / ``sweep.json`` rank the recipes by their final held-out
negative log-likelihood (a proper score: it punishes the over-confident stream that accuracy alone hides, and the
confidence metrics AD / AI / AG read exactly that confidence), accuracy breaking ties.

    python -m routines.experiments.sweep --dataset fashion_mnist --publish assets/results/sweep_fashion_mnist
Finished runs (all their epochs logged) are reused; an interrupted one resumes.
"""
from __future__ import annotations

import argparse
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from utils.data.builtin import ensure_builtin_dataset
from utils.data.lists import CLASSES_FILENAME
from utils.reports.plots import save_learning_curves
from utils.runtime.io import atomic_write_text, save_json, write_csv
from utils.runtime.layout import RunFolder

from .steps import REPO, fashion_mnist_root, recorded_minutes, run, trained

DEFAULT_RECIPES = ("lr=3e-3", "lr=1e-3", "lr=3e-4", "lr=1e-4", "lr=3e-4,wd=0", "lr=3e-4,warmup=1")
_KEYS = {"lr": float, "epochs": int, "wd": float, "warmup": int}


@dataclass(frozen=True)
class Recipe:
    """A stream recipe: AdamW with a cosine schedule, peak ``lr``, ``wd`` weight decay, ``warmup`` linear warm-up
    epochs, for ``epochs`` epochs on the frozen GAP model."""

    lr: float = 1e-3
    epochs: int = 12
    wd: float = 0.05
    warmup: int = 0

    @classmethod
    def parse(cls, text: str, epochs: int) -> Recipe:
        """``lr=3e-4,epochs=8,wd=0,warmup=1`` (keys left out: the defaults, ``epochs`` the sweep's)."""
        values: dict = {"epochs": epochs}
        for item in filter(None, text.split(",")):
            key, _, value = item.partition("=")
            if key not in _KEYS:
                raise SystemExit(f"error: --recipes {text}: unknown key {key!r}; expected {', '.join(_KEYS)}")
            try:
                values[key] = _KEYS[key](value)
            except ValueError:
                raise SystemExit(f"error: --recipes {text}: {key}={value} is not a {_KEYS[key].__name__}") from None
        return cls(**values)

    @property
    def name(self) -> str:
        return f"lr{self.lr:g}_e{self.epochs}_wd{self.wd:g}_w{self.warmup}"

    def flags(self) -> list[str]:
        return ["--lr", str(self.lr), "--epochs", str(self.epochs), "--weight_decay", str(self.wd),
                "--warmup_epochs", str(self.warmup)]


def holdout_lists(args: argparse.Namespace) -> tuple[Path, Path]:
    """(image root, training list without a validation list beside it): main_INets.py then holds out
    ``--holdout`` of it (seeded by --seed) as its validation images."""
    if args.dataset == "builtin":
        source = ensure_builtin_dataset(seed=0)
    else:
        source = fashion_mnist_root(args.out, args.train_per_class, args.val_per_class, args.imsize)
    lists = args.out / "lists"
    lists.mkdir(parents=True, exist_ok=True)
    for name in ("train.csv", CLASSES_FILENAME):
        if (source / name).is_file():
            shutil.copyfile(source / name, lists / name)
    return source / "images", lists / "train.csv"


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.out = args.out or REPO / "runs" / "sweep" / args.dataset
    if args.base_epochs not in args.gap_epochs:
        parser.error(f"--base_epochs {args.base_epochs} is not one of --gap_epochs {args.gap_epochs}")
    recipes = [Recipe.parse(text, args.stream_epochs) for text in args.recipes]
    images, train_list = holdout_lists(args)
    common = ["--model", args.backbone, "--imsize", str(args.imsize), "--seed", str(args.seed), "--workers", "0",
              "--batch_size", str(args.batch_size), "--root_data", str(images), "--path_list", str(train_list),
              "--val_split", str(args.holdout)]
    runs: dict[str, tuple[Path, int, dict]] = {}
    for epochs in args.gap_epochs:
        folder = args.out / f"gap_e{epochs}"
        if not trained(RunFolder(folder), epochs):
            run(["main_INets.py", *common, "--epochs", str(epochs), "--store_dir", str(folder), "--resume"],
                args.out / "logs" / f"{folder.name}.log")
        runs[f"GAP {epochs} epochs"] = (folder, epochs, {"pooling": "gap", "epochs": epochs})
    base = args.out / f"gap_e{args.base_epochs}"
    for recipe in recipes:
        folder = args.out / f"ca_gap{args.base_epochs}_{recipe.name}"  # a stream is its base's and its recipe's
        if not trained(RunFolder(folder), recipe.epochs):
            run(["main_INets.py", *common, "--pool", "ca", "--freeze", "--init_from", str(base), *recipe.flags(),
                 "--store_dir", str(folder), "--resume"], args.out / "logs" / f"{folder.name}.log")
        runs[f"CA {recipe.name}"] = (folder, recipe.epochs, {"pooling": "ca", **asdict(recipe)})
    logs = {name: RunFolder(folder).read_log(epochs) for name, (folder, epochs, _) in runs.items()}
    write_csv(args.out / "curves.csv", [{"run": name, **runs[name][2], **row} for name, rows in logs.items()
                                        for row in rows])
    summary = [{"run": name, **runs[name][2], **{key: float(rows[-1][key]) for key in ("val_acc", "val_loss",
                                                                                     "train_loss")},
                "best_val_acc": max(float(r["val_acc"]) for r in rows)}
               for name, rows in logs.items()]
    streams = sorted((row for row in summary if row["pooling"] == "ca"), key=lambda r: (r["val_loss"], -r["val_acc"]))
    chosen = streams[0]
    # the runs' durations stay beside their logs, so a rerun that reuses them still reports the sweep's cost
    minutes = recorded_minutes(args.out / "logs")
    save_json(args.out / "sweep.json", {"dataset": args.dataset, "backbone": args.backbone, "imsize": args.imsize,
                                        "seed": args.seed, "holdout": args.holdout, "base_gap_epochs": args.base_epochs,
                                        "runs": summary, "chosen": chosen, "minutes": minutes})
    atomic_write_text(args.out / "sweep.md", sweep_table(args, summary, chosen))
    save_learning_curves(args.out / "curves.png", logs,
                         f"{args.dataset} at {args.imsize}px: held-out {args.holdout:.0%} of the training images")
    if args.publish:
        args.publish.mkdir(parents=True, exist_ok=True)
        for name in ("sweep.md", "sweep.json", "curves.csv", "curves.png"):
            shutil.copyfile(args.out / name, args.publish / name)
    print((args.out / "sweep.md").read_text())


def sweep_table(args: argparse.Namespace, summary: list[dict], chosen: dict) -> str:
    lines = [f"**Recipe sweep: {args.dataset}, {args.backbone} at {args.imsize}px, seed {args.seed}, scored on "
             f"{args.holdout:.0%} of the training images held out** (streams on the frozen {args.base_epochs}-epoch "
             f"GAP model; ranked by final held-out NLL)", "",
             "| run | epochs | held-out acc (final) | best acc | held-out NLL (final) | train loss (final) |",
             "|---|---|---|---|---|---|"]
    for row in summary:
        mark = " **(chosen)**" if row is chosen else ""
        lines.append(f"| {row['run']}{mark} | {row['epochs']} | {row['val_acc']:.2f} | {row['best_val_acc']:.2f} | "
                     f"{row['val_loss']:.3f} | {row['train_loss']:.3f} |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=("builtin", "fashion_mnist"), default="builtin")
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--imsize", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--holdout", type=float, default=0.2, help="fraction of the training list held out")
    parser.add_argument("--gap_epochs", type=int, nargs="+", default=[4, 8], help="GAP fine-tuning lengths tried")
    parser.add_argument("--base_epochs", type=int, default=4, help="the GAP run every stream recipe starts from")
    parser.add_argument("--stream_epochs", type=int, default=12, help="epochs of a recipe that does not name them")
    parser.add_argument("--recipes", nargs="+", default=list(DEFAULT_RECIPES),
                        help="stream recipes, each key=value[,key=value] of lr, epochs, wd, warmup")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--train_per_class", type=int, default=150, help="Fashion-MNIST training images per class")
    parser.add_argument("--val_per_class", type=int, default=30, help="Fashion-MNIST validation images per class")
    parser.add_argument("--out", type=Path, default=None, help="default: runs/sweep/<dataset>")
    parser.add_argument("--publish", type=Path, default=None, help="copy the table, curves and plot here")
    return parser


if __name__ == "__main__":
    main()
