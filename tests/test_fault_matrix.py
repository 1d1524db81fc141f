"""The fault matrix: every bad input and fault the project names (the brief's and the reliability issue's) and
what it gives, in one place. A user error is one line naming the file, flag or value; a fault loses nothing.
Rows tested in this file name their test; the others name the file under tests/ that tests them.

Training (main_INets.py)
- kill -9 at each of the 24 atomic write points of a run, resumed after each: final weights, log.csv rows,
  periodic checkpoints and TensorBoard scalars equal an uninterrupted run's; no .tmp file stays
  (training/test_training.py: test_kill_at_every_write_point_loses_nothing)
- kill -9 mid-epoch with the default flags (2 persistent loader workers), then --resume: every tensor equal to an
  uninterrupted run's (training/test_training.py: test_killed_run_resumes_exactly_with_default_flags)
- epoch 1 replaying epoch 0's augmentation under persistent workers: no, each epoch draws anew, as with no workers
  (training/test_training.py: test_persistent_workers_see_every_epoch)
- a rerun into a folder holding a run, without --resume: refused, the folder untouched; --overwrite removes only
  the run's files; --resume of another network: refused (training/test_training.py:
  test_a_run_folder_is_reused_only_on_purpose, test_resume_with_another_model)
- a label outside the classes (classes.txt, --classes) or negative: one line with file:line, before training;
  labels that leave classes empty without --classes: refused, naming them (training/test_training.py:
  test_label_outside_*, test_labels_without_class_names)
- --path_list train.csv with a val.csv beside it: that is the validation list, and the log says so
  (training/test_training.py: test_val_csv_beside_a_list_file_is_the_validation_list)
- --path_list naming a folder without train.csv (or train.txt) leaves the images to --root_data's class folders
  (the paper README's `--path_list data/`); a --root_data whose sub-folders are splits (train/, val/), not classes:
  one line naming the folder and them (it trained a model to tell train from val)
  (test_path_list_folder_without_a_training_list)
- a missing or empty (0 bytes) image anywhere in the training or validation list: one line with the list's
  file:line and the image, before training (one stat per listed file, no decoding); a corrupt validation image
  among the first 16: one line naming it, before training (they are decoded at start-up); a corrupt one further
  on: named when validation first reads it (test_bad_images_are_found_before_training)
- a log file instead of a terminal: plain lines, no progress bars (training/test_training.py:
  test_a_log_file_gets_plain_lines_not_progress_bars); the sbatch routine fine-tunes the pretrained backbone
  (runtime/test_slurm.py)
- a missing --root_data, an empty list, a checkpoint (--init_from) of another architecture, an unknown --config key:
  one line each (training/test_training.py)
- a diverging training (--opt sgd --lr 1e6): a non-finite training loss stops it before the step, NaN logits in
  validation (or non-finite weights) before the epoch is saved; one line with the epoch, the value and a hint,
  no non-finite weights saved (test_diverged_training_stops_with_one_line)
- a checkpoint write interrupted, or its writer killed: the previous checkpoint still loads
  (training/test_training.py: test_interrupted_checkpoint_write_*, test_killed_writer_process_*)
- a run folder written before the package layout: loads with the same logits and resumes
  (runtime/test_run_folder_compatibility.py)
- --epochs 0, --batch_size 0, --workers -1, --seed -3, --imsize 0, --heads 0, --classes 0 (training) and --seed -3,
  --workers -1 (evaluation): one line naming the flag and the value, before a model is built or a file written
  (they were a traceback, a stub run folder, or silently the default) (test_out_of_range_flags_are_one_line)
- a --config YAML value the flag would not take (epochs: 1.5, lr: [0.1, 0.2], freeze: "no", pool: avg): refused
  when the file is read, naming the file and the key; milestones: 5 is the list [5]
  (test_config_values_are_checked_against_their_flags)
- two runs at once into one --store_dir (both ended rc 0 with their files mixed): the folder is locked for the run's
  life (an flock, released by the kernel on kill -9, not held by forked loader workers); the second gets one line
  naming the folder and the holder (pid, host, start, command) and writes nothing, whether --resume, --overwrite or
  neither; after the holder's kill -9 the next run takes the folder (test_two_runs_into_one_folder); under the
  sbatch routines the refused rank 0 ends the job at once, not after the other ranks' 30-minute rendezvous wait
  (runtime/test_slurm.py: test_a_failing_rank_ends_the_job)
- --resume with another --imsize (it continued and rewrote config.json), or another input normalisation: one line
  naming the flag and both values, config.json untouched (test_resume_with_another_geometry_is_refused)
- --use_gpu without CUDA (a traceback in training): one line, nothing created
  (test_use_gpu_without_cuda_in_training); --amp fp16 on a CPU, in all three scripts (accepted, 30x slower): refused
  with one line pointing at bf16 (test_amp_fp16_on_a_cpu_is_refused)
- a read-only or full disk during training: one line naming the file and the reason (ENOSPC, EACCES, EROFS), the
  previous checkpoint intact and no temporary left (test_full_or_read_only_disk_during_training)
- an unknown --model (reported as "no pretrained config"): one line naming the flag, the value, close names and the
  tested backbones (test_unknown_model_names_the_flag)
- a truncated last.pth or model.safetensors, or a .pth of pickled objects: one line naming the file, corrupt or
  truncated, never PyTorch's advice to reload with weights_only=False
  (test_corrupt_checkpoint_is_named_without_unsafe_advice)

Data, in all three scripts
- a corrupt image (truncated PNG), loader workers on: one line with the image's path and PIL's reason, and the
  workers ended with the error (called in-process, they lingered until a later garbage collection, which then
  waited up to 30 s for them inside another test) (test_corrupt_image_*)
- a list file with a bad row: one line with file:line and the row (data/test_data.py)
- a 16-bit greyscale PNG (PIL mode I;16): loaded as its 8-bit version, 65535 -> 255 (PIL's own conversion made it
  nearly all white); 32-bit integer or float images: one line naming the file
  (test_sixteen_bit_png_loads_as_its_eight_bit_version, test_images_without_an_eight_bit_scale_are_refused)
- Pascal VOC (--dataset voc): an annotation XML without objects, an object of an unknown class, a missing JPEG, an
  image-set id without an annotation, a multi-label list naming a class (by name or index) outside the classes, a
  JSON list with the wrong number of labels, an unknown image set, --classes other than the devkit's, a box with
  xmax < xmin or ymax < ymin or outside the image (naming the object too), an empty JPEG (with the image set's
  line): one line naming the file (and line) each (data/test_voc.py: test_bad_input_is_one_line_naming_the_file,
  test_classes_must_match_the_devkit)
- tar shards (--dataset wds): a sample without a class (no .cls), a corrupt image in a tar (loader workers on), no
  .tar under --root_data, a class outside --classes: one line naming the shard and the key (or the folder)
  (test_bad_shards_and_hf_datasets_are_one_line)
- a Hugging Face dataset on disk (--dataset hf) without an image column, without a label column, or with a class
  outside --classes: one line naming the dataset and the column (or row) (test_bad_shards_and_hf_datasets_are_one_line)
- --criterion CrossEntropy on multi-label data; --resume of a single-label run with --dataset voc: one line each
  (training/test_multilabel.py); a multi-label run evaluated as single-label data: one line
  (evaluation/test_multilabel.py)

Evaluation (recognition_imagenet.py, objrecon_imagenet.py)
- an unwritable --store_dir: one line naming the flag and the folder, before the model is loaded
  (test_unwritable_store_dir)
- stale maps, another model's saliency file in the evaluation folder: refused, naming the file and what differs
  (test_maps_of_another_model_*)
- maps of other data (another list file, another --imsize): refused likewise (test_maps_of_other_data_are_refused)
- a saliency file that is not an .npz, (N, 0, 0) maps, or a (dataset row, class) pair twice: one line naming the
  file (test_broken_saliency_files)
- a saliency file whose maps are strings, whose indices are floats, or whose maps are Python objects: one line
  naming the file and the dtype (was a traceback); the objects are never unpickled, so loading runs no code
  (test_saliency_files_of_another_dtype)
- several maps per image (image-class pairs) for a single-label model: one line naming the file
  (test_several_maps_per_image_for_a_single_label_model)
- constant or 1x1 maps: scored, with a warning naming the file (test_degenerate_maps_are_scored_with_a_warning)
- maps of the older format, without identity: scored, with a warning that they are unchecked
  (test_maps_without_identity_are_scored_with_a_warning)
- --method without --salient: the named method's maps are written (test_method_implies_salient)
- objrecon's progress bar: counts images, not batches (test_objrecon_progress_counts_images)
- weights holding NaN (a diverged training's): one line naming the file and a weight; finite weights whose logits
  overflow: one line naming the dataset row (test_non_finite_weights_are_refused)
- a checkpoint of another model or class count: one line naming the file and the mismatch (models/test_models.py,
  evaluation/test_recognition.py)
- an index out of range, a fraction outside (0, 1], an unknown method, --use_gpu without CUDA: one line naming the
  flag and the value (evaluation/test_recognition.py, evaluation/test_objrecon.py)
- two evaluations at once into one --store_dir: the second gets one line naming the folder and the holder
  (test_two_evaluations_into_one_folder)
- a failed evaluation (a bad --indexes): no empty --store_dir left behind; a folder the user made stays
  (test_failed_evaluation_leaves_no_empty_folder)
- a log file instead of a terminal: plain lines at every tenth of the images, no progress bars
  (test_evaluation_log_file_gets_plain_lines)
- kill -9 of recognition_imagenet.py at each of its write points (every shard and final file, before and after the
  rename), of objrecon_imagenet.py at a seeded 30% of them, resumed with --resume after each: the final files equal
  an uninterrupted run's byte for byte, no shard or .tmp file stays (evaluation/test_resume.py:
  test_recognition_killed_at_every_write_point_*, test_objrecon_killed_at_write_points_*)
- a 2-process evaluation pre-empted (SIGTERM to a rank while it computes a shard): that shard is dropped, the
  committed ones stay; resumed with another world size (1 process): the uninterrupted run's files
  (evaluation/test_resume.py: test_resume_in_another_world_size_after_a_preempted_two_process_run)
- --resume with another --method list, --imsize, other weights (--state_root) or --batch_size than the committed
  shards: one line naming each difference and the shard, the shards untouched (evaluation/test_resume.py:
  test_resume_with_other_flags_is_one_line_naming_them)
- a shard cut short, a shard holding other rows than its name says, --shard_batches 0: one line naming the file (or
  the flag) (evaluation/test_resume.py: test_corrupt_or_foreign_shards_are_one_line)
- a rerun without --resume over an unfinished run's shards: they are removed with a note, a fresh start, nothing
  mixed (evaluation/test_resume.py: test_without_resume_an_unfinished_run_starts_afresh)

Reports (report.html, compare.html: utils/reports)
- the compare command given a folder without summary.json: one line naming the folder; given one folder: one line
  asking for two or more (reports/test_pages.py: test_compare_errors_are_one_line)
- the compare command given folders that scored another number of images (or other images): one line naming the
  folder and both counts; objrecon --compare with such a folder notes it and writes no compare.html
  (reports/test_pages.py: test_compare_errors_are_one_line)
- the compare command given a folder whose metrics.csv holds fewer images than its summary.json counts: one line
  naming the folder and both files (reports/test_pages.py: test_compare_errors_are_one_line)
- an objrecon rerun with a smaller gallery or --report_images 0: no stale thumbnail or report.html stays
  (reports/test_pages.py: test_report_images_flag)
- no browser installed: the browser tests skip with the reason, except in CI (env CI), where they fail
  (reports/test_pages.py: browser)

Saliency fast paths and forwards (utils/explain, utils/runtime/forward.py)
- a chunk of Score-CAM / Ablation-CAM forwards, or of any ForwardSettings.chunked workload, that runs out of GPU
  memory: split in halves until it fits, the same maps; a single row that does not fit: the error stands
  (explain/test_fast_paths.py: test_per_channel_chunks_that_run_out_of_memory_are_split; runtime/test_forward.py)
- a per-channel batch_size below 1, a target layer that does not run in the forward, FullGrad given a target layer,
  --engine fast for a method without a fast path: one line naming the value (explain/test_fast_paths.py:
  test_fast_path_errors_name_the_value, explain/test_saliency.py: test_registry)
- a bf16 classification forward (recognition --amp bf16) feeding the gradient CAMs: their head runs in float32
  (explain/test_fast_paths.py: test_gradient_cams_from_a_bf16_classification_forward)
- a deep copy (EMA) of a model compiled with --compile: compiles its own backbone, never runs the original's
  (models/test_models.py: test_compiled_backbone_gives_the_same_logits_without_recompiling)

Benchmarks and experiments (bench/, routines/experiments/)
- python -m bench.readme with an unknown table name: one line naming it and the tables there are
  (bench/test_readme.py: test_unknown_block_is_a_one_line_error)
- a benchmark run written outside bench/results/ (a trial, a test): docs/performance.md is left alone
  (bench/test_readme.py: test_a_run_written_elsewhere_leaves_the_readme_alone)
- a 224 px comparison published beside the 128 px one: only its own block of the docs is rewritten
  (routines/test_experiments.py: test_publish_rewrites_only_its_own_block)
- a comparison killed during a training, then rerun: the training resumes to its last epoch (its weights exist
  after the first) before anything is evaluated (routines/test_experiments.py:
  test_a_training_killed_after_its_first_epoch_is_not_taken_as_done)
- a published results.json that disagrees with its per_image.csv: compare.py --recheck says by how much, exit 1
  (routines/test_experiments.py: test_shrunken_comparison_fills_every_cell)
- a sweep recipe with an unknown key or a value of the wrong type: one line naming it (routines/test_sweep.py:
  test_a_bad_recipe_gets_one_line); a rerun of the sweep retrains nothing (test_shrunken_sweep_scores_held_out_*)
- paired differences of rows with NaN, or with one cluster id short: one line (faithfulness/test_paired.py:
  test_bad_rows_get_one_line)
- a relative link or image of the README or the docs to a file that is not there: the docs test names it
  (test_docs.py: test_every_relative_link_and_image_exists)
"""
from __future__ import annotations

import errno
import json
import multiprocessing
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torchvision.transforms.functional import pil_to_tensor

import main_INets
import recognition_imagenet
import utils.training.trainer
from objrecon_imagenet import main as objrecon_main
from tests.data.writers import write_shard
from tests.helpers import maps_file, one_line_error, read_maps
from utils.data import ImageFolderDataset, ListDataset, ensure_builtin_dataset
from utils.runtime.cli import parse_args
from utils.runtime.io import atomic_write_leftovers, load_training_state
from utils.runtime.layout import EvaluationFolder
from utils.runtime.lock import LOCK_NAME, FolderLock
from utils.training.trainer import Trainer

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corrupt_list(trained_runs, tmp_path_factory) -> tuple[Path, Path, Path]:
    """A copy of six built-in validation images (one per class) with the third one truncated: (root, list, bad)."""
    data = Path(trained_runs["data"])
    root = tmp_path_factory.mktemp("corrupt")
    rows = (data / "val.csv").read_text().splitlines()[:6]
    for row in rows:
        relative = row.rsplit(",", 1)[0]
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data / "images" / relative, root / relative)
    bad = root / rows[2].rsplit(",", 1)[0]
    bad.write_bytes(bad.read_bytes()[:60])
    listing = root / "list.csv"
    listing.write_text("\n".join(rows) + "\n")
    return root, listing, bad


def evaluation_flags(runs: dict, pool: str, store_dir: Path, *extra: str) -> list[str]:
    data = Path(runs["data"])
    return ["--state_root", str(runs[pool]), "--store_dir", str(store_dir), "--root_data", str(data / "images"),
            "--path_lbl", str(data / "val.csv"), "--workers", "0", *extra]


# --------------------------------------------------------------------------------------------------
# corrupt images


@pytest.mark.parametrize("script", ["recognition", "objrecon"])
def test_corrupt_image_is_one_line_naming_the_file(trained_runs, corrupt_list, tmp_path, script):
    root, listing, bad = corrupt_list
    flags = ["--state_root", str(trained_runs["gap"]), "--store_dir", str(tmp_path), "--root_data", str(root),
             "--path_lbl", str(listing), "--workers", "2", "--batch_size", "2"]
    if script == "recognition":
        message = one_line_error(recognition_imagenet.main, flags)
    else:
        message = one_line_error(objrecon_main, [*flags, "--method", "gradcam"])
    assert str(bad) in message and "cannot read image" in message and "DataLoader" not in message
    # the workers are shut down with the error, not left to a later garbage collection (which then waited for
    # them, up to 30 s, inside whichever test came next)
    assert not multiprocessing.active_children()


def test_corrupt_image_in_training_is_one_line_naming_the_file(corrupt_list, tmp_path):
    root, listing, bad = corrupt_list
    message = one_line_error(main_INets.main, [
        "--model", "resnet18", "--imsize", "32", "--batch_size", "2", "--workers", "2", "--epochs", "1",
        "--root_data", str(root), "--path_list", str(listing), "--val_split", "0", "--store_dir", str(tmp_path / "r")])
    assert str(bad) in message and "cannot read image" in message and "DataLoader" not in message
    assert not multiprocessing.active_children()


@pytest.fixture(scope="module")
def bad_formats(tmp_path_factory) -> dict[str, tuple[list[str], list[str]]]:
    """Bad data in the formats of large datasets, six built-in images each: the data flags, and what the one-line
    error names."""
    import datasets
    from PIL import Image

    data = ensure_builtin_dataset(tmp_path_factory.mktemp("bad_formats_builtin") / "b", seed=0, imsize=32,
                                  train_per_class=1, val_per_class=1)
    out = tmp_path_factory.mktemp("bad_formats")
    rows = [(path.rsplit(".", 1)[0], (data / "images" / path).read_bytes(), label)
            for path, label in (row.rsplit(",", 1) for row in (data / "val.csv").read_text().splitlines())]
    no_class = write_shard(out / "no_class" / "s-0.tar", [*rows[:2], (rows[2][0], rows[2][1], None), *rows[3:]])
    corrupt = write_shard(out / "corrupt" / "s-0.tar", [*rows[:2], (rows[2][0], rows[2][1][:60], 2), *rows[3:]])
    outside = write_shard(out / "outside" / "s-0.tar", [*rows[:5], (rows[5][0], rows[5][1], 9)])
    (out / "empty").mkdir()
    images = [Image.open(data / "images" / f"{key}.png") for key, _, _ in rows]
    labels = [int(label) for _, _, label in rows]
    for name, columns in {"no_image": {"picture": [key for key, _, _ in rows], "label": labels},
                          "no_label": {"image": images, "caption": [key for key, _, _ in rows]},
                          "hf_outside": {"image": images, "label": [*labels[:5], 9]}}.items():
        datasets.Dataset.from_dict(columns).save_to_disk(str(out / name))
    shards, hf = ["--dataset", "wds", "--root_data"], ["--dataset", "hf", "--root_data"]
    return {
        "sample without a class": ([*shards, str(out / "no_class")], [str(no_class), rows[2][0], "no class"]),
        "corrupt image": ([*shards, str(out / "corrupt")], [f"{corrupt}:{rows[2][0]}", "cannot read image"]),
        "no shards": ([*shards, str(out / "empty")], [str(out / "empty"), "no .tar shards"]),
        "class outside --classes": ([*shards, str(out / "outside")], [str(outside), f"{rows[5][0]}.cls",
                                                                       "class 9 is outside [0, 6)"]),
        "hf without image column": ([*hf, str(out / "no_image")], [str(out / "no_image"), "no image column",
                                                                    "picture, label"]),
        "hf without label column": ([*hf, str(out / "no_label")], [str(out / "no_label"), "no label column"]),
        "hf class outside --classes": ([*hf, str(out / "hf_outside")], [str(out / "hf_outside"), "row 5",
                                                                         "class 9 is outside [0, 6)"]),
    }


FORMAT_FAULTS = ["sample without a class", "no shards", "class outside --classes", "hf without image column",
                 "hf without label column", "hf class outside --classes"]


# found when the dataset is built, by the factory that all three scripts share: training and recognition test it;
# a corrupt image is found when read, by each script's loader
@pytest.mark.parametrize("fault, script", [
    *((fault, script) for fault in FORMAT_FAULTS for script in ("training", "recognition")),
    *(("corrupt image", script) for script in ("training", "recognition", "objrecon"))])
def test_bad_shards_and_hf_datasets_are_one_line(trained_runs, bad_formats, tmp_path, fault, script):
    flags, named = bad_formats[fault]
    flags = [*flags, "--workers", "2", "--batch_size", "2", "--imsize", "32"]
    if script == "training":
        message = one_line_error(main_INets.main, [*flags, "--model", "resnet18", "--epochs", "1", "--classes", "6",
                                                   "--val_split", "0", "--store_dir", str(tmp_path / "r")])
    else:
        flags = [*flags, "--state_root", str(trained_runs["gap"]), "--store_dir", str(tmp_path)]
        main = recognition_imagenet.main if script == "recognition" else objrecon_main
        message = one_line_error(main, flags if script == "recognition" else [*flags, "--method", "gradcam"])
    assert all(part in message for part in named), message
    assert "DataLoader" not in message and not multiprocessing.active_children()


# --------------------------------------------------------------------------------------------------
# data found wrong before training starts


def test_path_list_folder_without_a_training_list(tmp_path):
    """--root_data holding train/ and val/ (ImageNet's layout) trains on train/'s class folders, not on two
    'classes' train and val; an image folder of split folders is refused."""
    data = ensure_builtin_dataset()
    folder = tmp_path / "lists"
    folder.mkdir()
    shutil.copy(data / "val.csv", folder / "val.csv")
    run = tmp_path / "run"
    main_INets.main(["--model", "resnet18", "--imsize", "32", "--workers", "0", "--epochs", "1", "--fraction", "0.05",
                     "--root_data", str(data / "images"), "--path_list", str(folder), "--store_dir", str(run)])
    config = json.loads((run / "config.json").read_text())
    assert config["class_names"] == sorted((data / "classes.txt").read_text().split())  # the class folders
    with pytest.raises(ValueError, match=r"holds train/, val/: split folders, not one sub-folder per class"):
        ImageFolderDataset(data / "images")


def copied_list(data: Path, listing: str, count: int, folder: Path) -> tuple[Path, list[Path]]:
    """The first ``count`` rows of the built-in set's ``listing``, their images copied under ``folder / "images"``:
    the list file and the images, in row order."""
    rows = (data / listing).read_text().splitlines()[:count]
    images = [folder / "images" / row.rsplit(",", 1)[0] for row in rows]
    for image, row in zip(images, rows):
        image.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data / "images" / row.rsplit(",", 1)[0], image)
    (folder / listing).write_text("\n".join(rows) + "\n")
    return folder / listing, images


@pytest.mark.parametrize("fault", ["empty validation image", "empty training image", "corrupt validation image"])
def test_bad_images_are_found_before_training(tmp_path, monkeypatch, fault):
    """Twelve training and twenty validation images of the built-in set: an empty file in the last validation row
    or the fifth training row, or a truncated one at validation row 3, fails before any training step."""
    data = ensure_builtin_dataset()
    train_list, train_images = copied_list(data, "train.csv", 12, tmp_path / "train")
    val_list, val_images = copied_list(data, "val.csv", 20, tmp_path / "val")

    def no_training(*args, **kwargs):
        raise AssertionError("a training step ran before the bad image was found")

    monkeypatch.setattr(utils.training.trainer, "train_one_epoch", no_training)
    if fault == "empty validation image":
        bad = val_images[-1]
        bad.write_bytes(b"")
        expected = f"error: {val_list}:20: image {bad} is empty (0 bytes)"
    elif fault == "empty training image":
        bad = train_images[4]
        bad.write_bytes(b"")
        expected = f"error: {train_list}:5: image {bad} is empty (0 bytes)"
    else:
        bad = val_images[2]
        bad.write_bytes(bad.read_bytes()[:60])
        expected = f"error: cannot read image {bad}"
    message = one_line_error(main_INets.main, [
        "--model", "resnet18", "--imsize", "32", "--batch_size", "4", "--workers", "0", "--epochs", "1",
        "--root_data", str(tmp_path / "train" / "images"), "--path_list", str(train_list),
        "--val_root", str(tmp_path / "val" / "images"), "--val_list", str(val_list),
        "--store_dir", str(tmp_path / "run")])
    assert message.startswith(expected), message


def test_sixteen_bit_png_loads_as_its_eight_bit_version(tmp_path):
    """A real 16-bit PNG (written by PIL: mode I;16) and the 8-bit PNG of the same image, value / 257 rounded:
    the same tensor."""
    deep = np.random.default_rng(0).integers(0, 65536, (24, 32), dtype=np.uint16)
    deep[0] = np.linspace(0, 65535, 32).astype(np.uint16)  # the whole range, both ends included
    Image.fromarray(deep).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as written:
        assert written.mode == "I;16"
    Image.fromarray(np.round(deep / 257).astype(np.uint8)).save(tmp_path / "eight.png")
    (tmp_path / "list.csv").write_text("deep.png,0\neight.png,0\n")
    dataset = ListDataset(tmp_path, tmp_path / "list.csv", transform=pil_to_tensor)
    (loaded, _), (reference, _) = dataset[0], dataset[1]
    assert loaded.shape == (3, 24, 32) and loaded.dtype == torch.uint8
    assert (loaded.int() - reference.int()).abs().max() <= 1
    assert loaded[:, 0, 0].tolist() == [0] * 3 and loaded[:, 0, -1].tolist() == [255] * 3


@pytest.mark.parametrize("pixels, expected", [
    (np.full((8, 8), 70000, np.int32), "32-bit integer pixels (PIL mode I)"),
    (np.full((8, 8), 0.5, np.float32), "floating-point pixels (PIL mode F)"),
], ids=["int32", "float32"])
def test_images_without_an_eight_bit_scale_are_refused(tmp_path, pixels, expected):
    Image.fromarray(pixels).save(tmp_path / "deep.tif")
    (tmp_path / "list.csv").write_text("deep.tif,0\n")
    with pytest.raises(OSError) as caught:
        ListDataset(tmp_path, tmp_path / "list.csv")[0]
    assert str(caught.value).startswith(f"cannot read image {tmp_path / 'deep.tif'}: {expected}")


# --------------------------------------------------------------------------------------------------
# diverged training


@pytest.mark.parametrize("batch_size, expected", [
    ("32", "epoch 1: the validation loss is nan"),  # one step: finite loss, weights that give NaN logits
    ("8", "the training loss is nan"),  # later steps see the NaN loss
], ids=["validation", "training"])
def test_diverged_training_stops_with_one_line(tmp_path, batch_size, expected):
    store = tmp_path / "run"
    message = one_line_error(main_INets.main, [
        "--model", "resnet18", "--opt", "sgd", "--lr", "1e6", "--imsize", "32", "--fraction", "0.05", "--epochs", "1",
        "--workers", "0", "--batch_size", batch_size, "--store_dir", str(store)])
    assert expected in message and "--lr" in message
    assert not list(store.glob("*.safetensors")) and not (store / "last.pth").exists()


@pytest.mark.parametrize("value, expected", [
    (float("nan"), "backbone.classifier.weight holds NaN or inf"),  # refused on loading, naming the file
    (3e38, "dataset row 0: the model's logits are NaN or inf"),  # finite weights, logits that overflow
], ids=["nan_weights", "overflowing_logits"])
def test_non_finite_weights_are_refused(tmp_path, value, expected):
    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "run_v1", run)
    weights = load_file(run / "model.safetensors")
    for name in ("backbone.classifier.weight", "backbone.classifier.bias"):
        weights[name] = torch.full_like(weights[name], value)
    save_file(weights, run / "model.safetensors")
    data = ensure_builtin_dataset()
    message = one_line_error(recognition_imagenet.main, [
        "--state_root", str(run), "--store_dir", str(tmp_path / "eval"), "--root_data", str(data / "images"),
        "--path_lbl", str(data / "val.csv"), "--workers", "0", "--indexes", "0", "1"])
    assert expected in message
    if value != value:  # NaN
        assert str(run / "model.safetensors") in message


# --------------------------------------------------------------------------------------------------
# output folders


@pytest.mark.parametrize("main", [recognition_imagenet.main, objrecon_main], ids=["recognition", "objrecon"])
def test_unwritable_store_dir(tmp_path, main):
    """Found before any work: the --state_root given does not even exist, and the error is still the folder's."""
    in_the_way = tmp_path / "a_file"
    in_the_way.write_text("not a folder")
    message = one_line_error(main, ["--state_root", str(tmp_path / "no_run"), "--store_dir",
                                    str(in_the_way / "eval"), "--method", "gradcam"])
    assert "--store_dir" in message and str(in_the_way / "eval") in message and "not a writable folder" in message


@pytest.mark.parametrize("flags", [["--epochs", "0"], ["--batch_size", "0"], ["--workers", "-1"], ["--seed", "-3"],
                                   ["--imsize", "0"], ["--heads", "0"], ["--classes", "0"]],
                         ids=lambda flags: flags[0])
def test_out_of_range_flags_are_one_line(tmp_path, flags):
    message = one_line_error(main_INets.main, ["--model", "resnet18", "--store_dir", str(tmp_path / "run"), *flags])
    assert message == f"error: {flags[0]} must be >= {0 if flags[0] in ('--workers', '--seed') else 1}, got {flags[1]}"
    assert not (tmp_path / "run").exists()  # nothing built, nothing written


@pytest.mark.parametrize("main", [recognition_imagenet.main, objrecon_main], ids=["recognition", "objrecon"])
@pytest.mark.parametrize("flags", [["--seed", "-3"], ["--workers", "-1"]], ids=lambda flags: flags[0])
def test_out_of_range_evaluation_flags_are_one_line(tmp_path, main, flags):
    message = one_line_error(main, ["--state_root", str(tmp_path / "no_run"), "--store_dir", str(tmp_path / "eval"),
                                    "--method", "gradcam", *flags])
    assert message == f"error: {flags[0]} must be >= 0, got {flags[1]}"


@pytest.mark.parametrize("text, key, expected", [
    ("epochs: 1.5", "epochs", "expected an integer, got 1.5"),
    ("lr: [0.1, 0.2]", "lr", "expected a number, got [0.1, 0.2]"),
    ('freeze: "no"', "freeze", "expected true or false, got 'no'"),
    ("pool: avg", "pool", "'avg' is not one of gap, ca, ca_last"),
    ("crop_scale: [0.5]", "crop_scale", "expected 2 values, got [0.5]"),
])
def test_config_values_are_checked_against_their_flags(tmp_path, capsys, text, key, expected):
    config = tmp_path / "config.yaml"
    config.write_text(text + "\n")
    with pytest.raises(SystemExit) as raised:
        main_INets.main(["--config", str(config), "--store_dir", str(tmp_path / "run")])
    assert raised.value.code == 2  # argparse's usage error, as for a bad flag on the command line
    assert f"error: --config {config}: {key}: {expected}" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_config_list_flag_takes_a_single_value(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("milestones: 5\nepochs: 3\nlr: 1\n")
    parsed = parse_args(main_INets.build_parser(), ["--config", str(config)])
    assert parsed.milestones == [5] and parsed.epochs == 3 and parsed.lr == 1.0 and isinstance(parsed.lr, float)


# --------------------------------------------------------------------------------------------------
# saliency files


@pytest.fixture(scope="module")
def ca_evaluation(trained_runs, tmp_path_factory) -> Path:
    """recognition_imagenet.py for the CA run, attention maps of the first six validation images."""
    store = tmp_path_factory.mktemp("ca_eval")
    recognition_imagenet.main(evaluation_flags(trained_runs, "ca", store, "--indexes", *map(str, range(6)),
                                               "--method", "attention", "--n_overlays", "0"))
    return store


def test_method_implies_salient(ca_evaluation):
    maps = read_maps(ca_evaluation, "attention")
    assert maps["maps"].shape[0] == 6 and maps["identity"]["model"]["pool"] == "ca"


def test_maps_of_another_model_are_refused(trained_runs, ca_evaluation, tmp_path):
    """The CA run's attention maps, then objrecon with the GAP run in the same folder: refused, not scored as
    "gap attention"."""
    store = tmp_path / "eval"
    shutil.copytree(ca_evaluation, store)
    message = one_line_error(objrecon_main, evaluation_flags(trained_runs, "gap", store))
    assert str(maps_file(store, "attention")) in message and "another model" in message
    assert "pool ca (now gap)" in message and "weights" in message


def test_maps_of_another_model_in_a_mixed_folder_are_refused(trained_runs, ca_evaluation, tmp_path):
    """A GAP recognition into a folder that holds the CA run's maps: its own maps pass, the stale ones are named."""
    store = tmp_path / "eval"
    shutil.copytree(ca_evaluation, store)
    recognition_imagenet.main(evaluation_flags(trained_runs, "gap", store, "--indexes", *map(str, range(6)),
                                               "--method", "gradcam", "--n_overlays", "0"))
    message = one_line_error(objrecon_main, evaluation_flags(trained_runs, "gap", store))
    assert str(maps_file(store, "attention")) in message and "saliency_gradcam" not in message
    summary = objrecon_main(evaluation_flags(trained_runs, "gap", store, "--method", "gradcam"))
    assert list(summary["results"]) == ["gradcam"]


def test_maps_of_other_data_are_refused(trained_runs, ca_evaluation, tmp_path):
    store = tmp_path / "eval"
    shutil.copytree(ca_evaluation, store)
    data = Path(trained_runs["data"])
    shorter = tmp_path / "val_first_100.csv"
    shorter.write_text("\n".join((data / "val.csv").read_text().splitlines()[:100]) + "\n")
    flags = evaluation_flags(trained_runs, "ca", store)
    flags[flags.index("--path_lbl") + 1] = str(shorter)
    message = one_line_error(objrecon_main, flags)
    assert str(maps_file(store, "attention")) in message and "data rows 300" in message and "now 100" in message
    message = one_line_error(objrecon_main, [*evaluation_flags(trained_runs, "ca", store), "--imsize", "64"])
    assert "preprocessing imsize 96 (now 64)" in message


def test_broken_saliency_files(trained_runs, tmp_path):
    not_npz = tmp_path / "not_npz"
    not_npz.mkdir()
    maps_file(not_npz, "gradcam").write_bytes(b"\x93NUMPY not really")
    message = one_line_error(objrecon_main, evaluation_flags(trained_runs, "gap", not_npz))
    assert str(maps_file(not_npz, "gradcam")) in message and "is not a saliency file" in message
    assert "allow_pickle" not in message

    empty = tmp_path / "empty"
    EvaluationFolder(empty).save_maps("gradcam", torch.zeros(3, 0, 0), [0, 1, 2], [0, 1, 2], "gt")
    message = one_line_error(objrecon_main, evaluation_flags(trained_runs, "gap", empty))
    assert str(maps_file(empty, "gradcam")) in message and "maps are empty (0x0 pixels)" in message

    twice = tmp_path / "twice"
    EvaluationFolder(twice).save_maps("gradcam", torch.rand(3, 3, 3), [0, 0, 1], [2, 2, 0], "gt")
    message = one_line_error(objrecon_main, evaluation_flags(trained_runs, "gap", twice))
    assert str(maps_file(twice, "gradcam")) in message and "pair appears twice" in message


class _RunsCodeWhenUnpickled:
    """An object whose unpickling writes ``marker``: a saliency file holding it must load no further than its
    header."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("fault", ["string maps", "float indices", "object maps"])
def test_saliency_files_of_another_dtype(trained_runs, tmp_path, fault):
    store = tmp_path / "eval"
    path = EvaluationFolder(store).save_maps("gradcam", torch.rand(3, 3, 3), [0, 1, 2], [0, 1, 2], "gt")
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    marker = tmp_path / "code_ran"
    if fault == "string maps":
        arrays["maps"] = np.full((3, 3, 3), "0.5")
        expected = "its maps are of dtype <U3, expected floating-point numbers"
    elif fault == "float indices":
        arrays["indices"] = arrays["indices"].astype(np.float64)
        expected = "its indices are of dtype float64, expected integer numbers"
    else:
        arrays["maps"] = np.array([_RunsCodeWhenUnpickled(marker)] * 3, dtype=object)
        expected = "its maps are of dtype object (pickled Python objects), which are never loaded"
    np.savez(path, **arrays)
    message = one_line_error(objrecon_main, evaluation_flags(trained_runs, "gap", store))
    assert message.startswith(f"error: {path}: {expected}"), message
    assert not marker.exists()


@pytest.mark.slow  # ~20 s inside the suite (0.2 s alone); the other saliency-file faults stay in the default run
def test_several_maps_per_image_for_a_single_label_model(trained_runs, tmp_path):
    """Maps of image-class pairs (a multi-label evaluation's file) are refused for a single-label model."""
    EvaluationFolder(tmp_path).save_maps("gradcam", torch.rand(3, 3, 3), [0, 0, 1], [0, 1, 0], "gt")
    message = one_line_error(objrecon_main, evaluation_flags(trained_runs, "gap", tmp_path))
    assert str(maps_file(tmp_path, "gradcam")) in message
    assert "2 maps for dataset row 0, but the model is single-label" in message


@pytest.mark.parametrize("maps, expected", [
    (torch.full((6, 3, 3), 0.5), "6 of 6 maps are constant"),
    (torch.rand(6, 1, 1), "its maps are 1x1"),
], ids=["constant", "1x1"])
def test_degenerate_maps_are_scored_with_a_warning(trained_runs, tmp_path, capsys, maps, expected):
    labels = [int(row.rsplit(",", 1)[1]) for row in (Path(trained_runs["data"]) / "val.csv").read_text().split()[:6]]
    EvaluationFolder(tmp_path).save_maps("gradcam", maps, list(range(6)), labels, "gt")
    summary = objrecon_main(evaluation_flags(trained_runs, "gap", tmp_path))
    assert summary["results"]["gradcam"]["num_images"] == 6
    warnings = [line for line in capsys.readouterr().err.splitlines() if expected in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: ")
    assert str(maps_file(tmp_path, "gradcam")) in warnings[0]


def test_objrecon_progress_counts_images(trained_runs, tmp_path, capsys):
    objrecon_main(evaluation_flags(trained_runs, "gap", tmp_path, "--method", "random", "--indexes",
                                   *map(str, range(5)), "--batch_size", "2"))
    progress = capsys.readouterr().err
    assert "5/5" in progress and "img" in progress and "batch" not in progress


def test_maps_without_identity_are_scored_with_a_warning(trained_runs, tmp_path, capsys):
    """Files of the earlier format (no identity) cannot be checked: scored, and the user is told so."""
    labels = [int(row.rsplit(",", 1)[1]) for row in (Path(trained_runs["data"]) / "val.csv").read_text().split()[:6]]
    EvaluationFolder(tmp_path).save_maps("gradcam", torch.rand(6, 3, 3), list(range(6)), labels, "gt")
    with np.load(maps_file(tmp_path, "gradcam")) as data:
        old_format = {key: data[key] for key in data.files if key != "identity"}
    np.savez(maps_file(tmp_path, "gradcam"), **old_format)
    objrecon_main(evaluation_flags(trained_runs, "gap", tmp_path))
    assert "records no model or data identity" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# run-side faults: folder locks, devices, disks, checkpoints, logs


TINY_RUN = ["--model", "resnet18", "--imsize", "32", "--batch_size", "16", "--workers", "0", "--fraction", "0.05",
            "--val_split", "0.02", "--seed", "0"]


def fixture_run_flags(run: Path, store_dir: Path, *extra: str) -> list[str]:
    """Evaluation flags for a copy of tests/fixtures/run_v1 (a 0.1M-parameter CA model) on two built-in images."""
    data = ensure_builtin_dataset()
    return ["--state_root", str(run), "--store_dir", str(store_dir), "--root_data", str(data / "images"),
            "--path_lbl", str(data / "val.csv"), "--workers", "0", "--indexes", "0", "1", *extra]


HOLD_AFTER_FIRST_EPOCH = """
import sys
import main_INets
from utils.training.trainer import Trainer

save = Trainer._save


def save_then_hold(self, *args, **kwargs):
    save(self, *args, **kwargs)
    print("holding", flush=True)
    sys.stdin.read()  # until the test closes stdin, or kills this process


Trainer._save = save_then_hold
main_INets.main(sys.argv[1:])
"""


def test_two_runs_into_one_folder(tmp_path):
    """A training (a real process, its loader workers forked) holds its folder: a second run gets one line naming
    the folder and the holder, and writes nothing; once the holder is killed with SIGKILL (its orphaned workers may
    live on for seconds), the next run takes the folder."""
    store = tmp_path / "run"
    flags = [*TINY_RUN, "--workers", "2", "--epochs", "2", "--store_dir", str(store)]
    holder = subprocess.Popen([sys.executable, "-c", HOLD_AFTER_FIRST_EPOCH, *flags], cwd=REPO, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        for line in holder.stdout:
            if line.strip() == "holding":
                break
        else:
            pytest.fail(f"the first run ended early (rc {holder.wait()})")
        before = {path.name: path.stat().st_mtime_ns for path in store.iterdir()}
        for second in (["--resume"], ["--overwrite"], []):
            message = one_line_error(main_INets.main, [*flags, "--workers", "0", *second])
            assert message.startswith(f"error: --store_dir {store} is in use by another run (pid {holder.pid} on ")
            assert message.endswith(f"--store_dir {store}); wait for it to end or use another --store_dir")  # argv
        assert {path.name: path.stat().st_mtime_ns for path in store.iterdir()} == before
    finally:
        holder.kill()  # SIGKILL: no handler runs, the kernel releases the lock
        holder.wait()
    assert (store / LOCK_NAME).exists()  # left by the killed run: a file, not a lock
    main_INets.main([*flags, "--workers", "0", "--resume"])
    assert not (store / LOCK_NAME).exists() and (store / "last.pth").is_file()


@pytest.mark.parametrize("main", [recognition_imagenet.main, objrecon_main], ids=["recognition", "objrecon"])
def test_two_evaluations_into_one_folder(tmp_path, main):
    store = tmp_path / "eval"
    with FolderLock(store, "--store_dir") as held:
        message = one_line_error(main, fixture_run_flags(FIXTURES / "run_v1", store, "--method", "gradcam"))
        assert f"--store_dir {store} is in use by another run (pid {os.getpid()} on " in message
        assert sorted(path.name for path in store.iterdir()) == [LOCK_NAME] and held.held
    assert not store.exists()  # the holder created it and wrote nothing: removed with the lock


@pytest.mark.parametrize("main", [recognition_imagenet.main, objrecon_main], ids=["recognition", "objrecon"])
def test_failed_evaluation_leaves_no_empty_folder(tmp_path, main):
    store = tmp_path / "new" / "eval"
    message = one_line_error(main, fixture_run_flags(FIXTURES / "run_v1", store, "--method", "gradcam",
                                                     "--indexes", "100000"))
    assert "100000" in message
    assert not (tmp_path / "new").exists()
    store.mkdir(parents=True)  # a folder the user made stays
    one_line_error(main, fixture_run_flags(FIXTURES / "run_v1", store, "--method", "gradcam", "--indexes", "100000"))
    assert store.is_dir() and not any(store.iterdir())


def test_resume_with_another_geometry_is_refused(tmp_path):
    store = tmp_path / "run"
    main_INets.main([*TINY_RUN, "--epochs", "1", "--store_dir", str(store)])
    config = (store / "config.json").read_text()
    message = one_line_error(main_INets.main, [*TINY_RUN, "--epochs", "2", "--store_dir", str(store), "--resume",
                                               "--imsize", "64"])
    assert "--imsize 32, but this run has --imsize 64" in message and str(store / "config.json") in message
    assert (store / "config.json").read_text() == config and len((store / "log.csv").read_text().splitlines()) == 2


def test_use_gpu_without_cuda_in_training(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    message = one_line_error(main_INets.main, [*TINY_RUN, "--use_gpu", "--store_dir", str(tmp_path / "run")])
    assert message == "error: --use_gpu given but CUDA is not available (leave it out to run on the CPU)"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("script", ["training", "recognition", "objrecon"])
def test_amp_fp16_on_a_cpu_is_refused(tmp_path, script):
    store = tmp_path / "out"
    if script == "training":
        message = one_line_error(main_INets.main, [*TINY_RUN, "--amp", "fp16", "--store_dir", str(store)])
    else:
        main = recognition_imagenet.main if script == "recognition" else objrecon_main
        message = one_line_error(main, fixture_run_flags(FIXTURES / "run_v1", store, "--amp", "fp16"))
    assert message.startswith("error: --amp fp16 is for CUDA (--use_gpu)") and "--amp bf16" in message
    assert not store.exists()


def test_unknown_model_names_the_flag(tmp_path):
    message = one_line_error(main_INets.main, [*TINY_RUN, "--model", "resnet5", "--store_dir", str(tmp_path / "r")])
    assert "--model: unknown backbone 'resnet5' (did you mean resnet50" in message
    assert "pretrained config" not in message and not (tmp_path / "r").exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's, about the file of pickled objects
def test_corrupt_checkpoint_is_named_without_unsafe_advice(tmp_path):
    """A truncated last.pth (resumed) and a truncated model.safetensors (evaluated): one line naming the file, and
    never PyTorch's advice to load with weights_only=False, which would run whatever the file holds."""
    store = tmp_path / "run"
    main_INets.main([*TINY_RUN, "--epochs", "1", "--store_dir", str(store)])
    state = store / "last.pth"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    message = one_line_error(main_INets.main, [*TINY_RUN, "--epochs", "2", "--store_dir", str(store), "--resume"])
    assert f"cannot read training state {state}: the file is corrupt or truncated" in message
    state.write_bytes(pickle.dumps(object))  # a pickle of something other than tensors
    message = one_line_error(main_INets.main, [*TINY_RUN, "--epochs", "2", "--store_dir", str(store), "--resume"])
    assert str(state) in message and "weights_only" not in message

    run = tmp_path / "run_v1"
    shutil.copytree(FIXTURES / "run_v1", run)
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    message = one_line_error(recognition_imagenet.main, fixture_run_flags(run, tmp_path / "eval"))
    assert f"{weights}: the file is corrupt or truncated" in message and "weights_only" not in message


def test_full_or_read_only_disk_during_training(tmp_path, monkeypatch):
    """The run folder becomes read-only (as root, for whom permissions do not apply: the disk fills up) in the second
    epoch: one line naming the file and the reason; the first epoch's checkpoint still loads."""
    store = tmp_path / "run"
    flags = [*TINY_RUN, "--store_dir", str(store), "--s_iterations", "1"]
    main_INets.main([*flags, "--epochs", "1"])
    committed = (store / "last.pth").read_bytes()
    save = Trainer._save

    def save_on_a_failing_disk(self, epoch, *args, **kwargs):
        if os.geteuid() == 0:
            def full(fd):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            monkeypatch.setattr(os, "fsync", full)
        else:
            store.chmod(0o555)
        return save(self, epoch, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_save", save_on_a_failing_disk)
    try:
        message = one_line_error(main_INets.main, [*flags, "--epochs", "2", "--resume"])
    finally:
        store.chmod(0o755)
    reason = os.strerror(errno.ENOSPC if os.geteuid() == 0 else errno.EACCES)
    assert re.fullmatch(rf"error: cannot write {re.escape(str(store))}/checkpoint_epoch2\.pth: {reason}; the "
                        r"checkpoint_epoch2\.pth there before, if any, is unchanged", message), message
    monkeypatch.undo()
    assert (store / "last.pth").read_bytes() == committed
    assert load_training_state(store / "last.pth")["epoch"] == 1
    assert not atomic_write_leftovers(store)


def test_evaluation_log_file_gets_plain_lines(tmp_path, monkeypatch, capsys):
    """stderr is a file, as in a batch job: a plain line at every tenth of the images, no bar redraws."""
    log = tmp_path / "job.err"
    with log.open("w") as stderr:
        monkeypatch.setattr(sys, "stderr", stderr)
        recognition_imagenet.main(fixture_run_flags(FIXTURES / "run_v1", tmp_path / "eval", "--batch_size", "1",
                                                    "--indexes", *map(str, range(20))))
        objrecon_main(fixture_run_flags(FIXTURES / "run_v1", tmp_path / "eval", "--method", "random",
                                        "--batch_size", "1", "--indexes", *map(str, range(20))))
    text = log.read_text() + capsys.readouterr().out
    assert not re.search(r"\r|\d+%\|", text)
    for desc in ("recognition", "objrecon"):
        counts = re.findall(rf"^{desc}: (\d+)/20 img \(\d+\.\d img/s\)$", text, re.M)
        assert counts == [str(n) for n in range(2, 21, 2)], text
