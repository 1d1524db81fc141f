"""Resumable evaluation (utils/evaluation/shards.py): both scripts killed at their write points and resumed end with
the files of an uninterrupted run, byte for byte; a pre-empted 2-process run resumes in one process; a resume with
other flags, a corrupt shard or a foreign one is one line.

A ResNet-18 CA run trained here for one step at 32 px, evaluated at 64 px on a few built-in validation images in
shards of one or two batches of two."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import main_INets
import objrecon_imagenet
import recognition_imagenet
from tests.helpers import one_line_error
from utils.evaluation import shards as shards_module
from utils.runtime.layout import EvaluationFolder

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[2]
INDEXES = ["--indexes", *map(str, range(8))]
RECOGNITION = ["--method", "gradcam", "random", "--n_overlays", "3"]
OBJRECON = ["--method", "gradcam", "--compute", "--save_maps", "--report_images", "1"]


class Killed(BaseException):
    """Stands for a kill -9 in the middle of a run (in-process)."""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, small_builtin, builtin_flags) -> Path:
    run = tmp_path_factory.mktemp("resume") / "run"
    main_INets.main(["--model", "resnet18", "--pool", "ca", "--imsize", "32", "--batch_size", "16", "--workers", "0",
                     "--fixed", "--seed", "3", "--epochs", "1", "--fraction", "0.1", *builtin_flags,
                     "--store_dir", str(run)])
    return run


@pytest.fixture(scope="module")
def flags(tiny_run, small_builtin) -> list[str]:
    """The flags both scripts share here: 8 images at 64 px, shards of one batch of 2 images."""
    return ["--state_root", str(tiny_run), "--root_data", str(small_builtin / "images"), "--path_lbl",
            str(small_builtin / "val.csv"), "--imsize", "64", "--batch_size", "2", "--workers", "0",
            "--shard_batches", "1", *INDEXES]


@pytest.fixture(scope="module")
def straight_recognition(tmp_path_factory, flags) -> Path:
    store = tmp_path_factory.mktemp("straight_recognition")
    recognition_imagenet.main([*flags, *RECOGNITION, "--store_dir", str(store)])
    return store


def files_of(store: Path) -> dict[str, bytes]:
    """Every file of an evaluation folder by relative path, its own path written as STORE (the reports record it),
    and the timing of the objrecon report as T."""
    files = {}
    for path in sorted(store.rglob("*")):
        if path.is_file():
            data = path.read_bytes().replace(str(store).encode(), b"STORE")
            if path.name == "summary.json":
                summary = json.loads(data)
                summary.pop("run")  # this attempt's seconds, command line and resumed shards
                data = json.dumps(summary).encode()
            if path.name == "report.html":
                data = re.sub(rb"; [0-9.]+ s\.", b"; T s.", data)
            files[str(path.relative_to(store))] = data
    return files


def assert_same_files(expected: Path, actual: Path) -> None:
    want, got = files_of(expected), files_of(actual)
    assert sorted(got) == sorted(want)
    assert [name for name in want if want[name] != got[name]] == []


def kill_chain(script: str, store: Path, argv: list[str], sample: float = 1.0) -> list[str]:
    result = subprocess.run([sys.executable, "-m", "tests.kill_chain", "--script", script, "--sample", str(sample),
                             str(store), *argv], cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])["kills"]


def killed_after(monkeypatch, commits: int) -> None:
    """The next run dies (in-process) once ``commits`` shards are committed."""
    commit = shards_module.ShardStore.commit
    done = []

    def commit_then_die(self, k, content, arrays):
        if len(done) == commits:
            raise Killed
        done.append(k)
        return commit(self, k, content, arrays)

    monkeypatch.setattr(shards_module.ShardStore, "commit", commit_then_die)


def partial_recognition(monkeypatch, store: Path, argv: list[str], commits: int = 2) -> None:
    killed_after(monkeypatch, commits)
    with pytest.raises(Killed):
        recognition_imagenet.main([*argv, "--store_dir", str(store)])
    monkeypatch.undo()
    assert len(list(EvaluationFolder(store).shards("recognition").glob("shard_*.npz"))) == commits


def test_recognition_killed_at_every_write_point_equals_an_uninterrupted_run(flags, tmp_path):
    # 2 shards; the overlays' assembly is another test's (matplotlib would dominate every attempt here)
    argv = [*flags, "--indexes", "0", "1", "2", "3", "--method", "gradcam", "--n_overlays", "0"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    recognition_imagenet.main([*argv, "--store_dir", str(straight)])
    kills = kill_chain("recognition_imagenet", killed, argv)
    assert_same_files(straight, killed)
    names = ["shard_000000.npz", "shard_000001.npz", "predictions.csv", "saliency_gradcam.npz", "classification.json"]
    assert {f"{when} start: {name}" for when in ("before", "after") for name in names} == set(kills)
    assert not (killed / "shards").exists()  # the shards go once the files are written; no temporary stays
    assert [path for path in killed.rglob("*") if path.name.endswith(".tmp")] == []


def test_objrecon_killed_at_write_points_equals_an_uninterrupted_run(flags, tmp_path):
    argv = [*flags, *OBJRECON, "--indexes", "0", "1", "2", "3"]  # 4 images: 2 shards
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    objrecon_imagenet.main([*argv, "--store_dir", str(straight)])
    kills = kill_chain("objrecon_imagenet", killed, argv, sample=0.3)  # 8 of its 20 points
    assert_same_files(straight, killed)
    assert any("shard_" in point for point in kills) and any("shard_" not in point for point in kills), kills
    assert not (killed / "shards").exists()
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["run"]["shards"] == {"count": 2, "resumed": 2}  # the last attempt only assembled the files


def test_resume_with_other_flags_is_one_line_naming_them(monkeypatch, flags, tiny_run, tmp_path):
    store = tmp_path / "store"
    partial_recognition(monkeypatch, store, [*flags, *RECOGNITION])
    resume = [*flags, *RECOGNITION, "--store_dir", str(store), "--resume"]
    message = one_line_error(recognition_imagenet.main, [*resume, "--method", "gradcam"])
    assert "--method gradcam random (now gradcam)" in message and "shard_000000.npz" in message
    message = one_line_error(recognition_imagenet.main, [*resume, "--imsize", "96"])
    assert "--imsize 64 (now 96)" in message
    other = tmp_path / "other_weights"
    other.mkdir()
    (other / "config.json").write_text((tiny_run / "config.json").read_text())
    weights = load_file(str(tiny_run / "model.safetensors"))
    save_file({key: value + 1e-3 if value.is_floating_point() else value for key, value in weights.items()},
              str(other / "model.safetensors"))
    message = one_line_error(recognition_imagenet.main, [*resume, "--state_root", str(other)])
    assert "model weights" in message and "--method" not in message
    message = one_line_error(recognition_imagenet.main, [*resume, "--batch_size", "4"])
    assert "--batch_size 2 (now 4)" in message
    # the refusals left the committed shards as they were
    assert len(list(EvaluationFolder(store).shards("recognition").glob("shard_*.npz"))) == 2


def test_resume_in_another_world_size_after_a_preempted_two_process_run(flags, straight_recognition, tmp_path):
    """torchrun with 2 ranks, rank 1 SIGTERMed (a pre-emption) while its second shard is computed: that shard is
    dropped, the other rank's are committed; a single process resumes them into the uninterrupted run's files."""
    plugin = tmp_path / "preempt.py"
    plugin.write_text(textwrap.dedent("""
        import os
        import signal

        from utils.evaluation.shards import ShardStore

        commit, done = ShardStore.commit, []

        def commit_or_preempted(self, k, content, arrays):
            if os.environ.get("RANK") == "1" and done:
                os.kill(os.getpid(), signal.SIGTERM)
            done.append(k)
            return commit(self, k, content, arrays)

        ShardStore.commit = commit_or_preempted
    """))
    store = tmp_path / "store"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "recognition_imagenet.py", *flags, *RECOGNITION, "--store_dir", str(store), "--plugin", str(plugin)],
        cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    committed = sorted(path.name for path in EvaluationFolder(store).shards("recognition").glob("shard_*.npz"))
    assert "shard_000001.npz" in committed and "shard_000003.npz" not in committed, committed  # rank 1's first only
    assert not (store / "predictions.csv").exists()
    recognition_imagenet.main([*flags, *RECOGNITION, "--store_dir", str(store), "--resume"])
    assert_same_files(straight_recognition, store)


def test_without_resume_an_unfinished_run_starts_afresh(monkeypatch, capsys, flags, straight_recognition, tmp_path):
    store = tmp_path / "store"
    partial_recognition(monkeypatch, store, [*flags, *RECOGNITION, "--imsize", "96"])
    capsys.readouterr()
    recognition_imagenet.main([*flags, *RECOGNITION, "--store_dir", str(store)])
    assert "removed 2 shards of an unfinished evaluation" in capsys.readouterr().err
    assert_same_files(straight_recognition, store)


def test_corrupt_or_foreign_shards_are_one_line(monkeypatch, flags, tmp_path):
    store = tmp_path / "store"
    partial_recognition(monkeypatch, store, [*flags, *RECOGNITION])
    folder = EvaluationFolder(store).shards("recognition")
    resume = [*flags, *RECOGNITION, "--store_dir", str(store), "--resume"]
    first = folder / "shard_000000.npz"
    good = first.read_bytes()
    first.write_bytes(good[:len(good) // 2])  # a shard cut short (a disk that filled up, a bad copy)
    message = one_line_error(recognition_imagenet.main, resume)
    assert str(first) in message and "not a readable shard" in message and "delete it" in message
    first.write_bytes(good)
    (folder / "shard_000001.npz").rename(folder / "shard_000002.npz")  # another shard's rows under its name
    message = one_line_error(recognition_imagenet.main, resume)
    assert "shard_000002.npz holds other rows than shard 2" in message
    message = one_line_error(recognition_imagenet.main, [*flags, "--shard_batches", "0", "--store_dir", str(store)])
    assert "--shard_batches must be >= 1, got 0" in message


def test_settings_from_python_resume(monkeypatch, flags, tiny_run, small_builtin, tmp_path, straight_recognition):
    """``RecognitionSettings(resume=True)`` continues what the script began."""
    from utils.evaluation import DataSubset, EvaluatedData, RecognitionSettings, Saliency, TrainedModel, recognise

    store = tmp_path / "store"
    partial_recognition(monkeypatch, store, [*flags, *RECOGNITION], commits=3)
    settings = RecognitionSettings(
        TrainedModel(str(tiny_run)),
        EvaluatedData(root=str(small_builtin / "images"), listing=str(small_builtin / "val.csv"), imsize=64,
                      batch_size=2, workers=0, subset=DataSubset(indexes=tuple(range(8)))),
        Saliency(methods=("gradcam", "random")), store_dir=str(store), n_overlays=3, resume=True, shard_batches=1)
    result = recognise(settings)
    assert result.report["count"] == 8
    assert_same_files(straight_recognition, store)
    assert torch.equal(EvaluationFolder.load_maps(result.maps["gradcam"])["maps"],
                       EvaluationFolder.load_maps(straight_recognition / "saliency_gradcam.npz")["maps"])
