"""main_INets.py end to end on CPU: learning, exact resume, DDP equivalence, freezing, atomic checkpoints,
and one-line errors for bad input."""
import csv
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import main_INets
import utils.training.trainer
from models import create_model
from tests.helpers import error_of
from utils.evaluation.model import load_trained_model
from utils.runtime.io import atomic_write, load_training_state, save_training_state
from utils.runtime.lock import LOCK_NAME
from utils.task import PassScore
from utils.training.flags import settings_from_flags
from utils.training.loops import EpochStats
from utils.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]
TINY = ["--model", "resnet18", "--imsize", "32", "--batch_size", "16", "--workers", "0", "--fixed", "--seed", "3",
        "--opt", "adamw", "--lr", "2e-3", "--weight_decay", "0.05", "--sched", "cosine"]


def train(store_dir: Path, *flags: str) -> dict:
    return main_INets.main([*TINY, "--store_dir", str(store_dir), *flags])


def weights(run: Path) -> dict:
    return load_file(str(run / "model.safetensors"))


def assert_same_weights(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol, msg=lambda m, k=key: f"{k}: {m}")


def test_training_on_builtin_dataset_learns(trained_runs):
    """The default job (EfficientNet-Lite0 from its packaged ImageNet weights, fine-tuned on the built-in set), as
    the shared GAP run trains it at 96 px: it learns, and leaves every file of a run folder."""
    run = trained_runs["gap"]
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1]
    accuracy = float(rows[-1]["val_acc"])
    print(f"validation accuracy after 1 epoch: {accuracy:.1f}% (chance 16.7%)")
    assert accuracy > 40.0
    for name in ("config.json", "args.yaml", "model.safetensors", "model_best.safetensors", "last.pth"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    config = json.loads((run / "config.json").read_text())
    assert config["backbone"] == "tf_efficientnet_lite0" and config["mean"] == [0.5, 0.5, 0.5]
    assert config["class_names"] == ["disc", "square", "triangle", "star", "cross", "ring"]


def test_resume_is_exact(tmp_path, builtin_flags):
    schedule = ["--fraction", "0.5", "--sched", "multistep", "--milestones", "1"]  # lr decays for epoch 2
    train(tmp_path / "straight", *builtin_flags, *schedule, "--epochs", "2")
    train(tmp_path / "resumed", *builtin_flags, *schedule, "--epochs", "1")
    with pytest.raises(AssertionError):  # the two runs really differ before resuming
        assert_same_weights(weights(tmp_path / "straight"), weights(tmp_path / "resumed"))
    state = load_training_state(tmp_path / "resumed" / "last.pth")
    del state["log"]  # as saved before the state kept the log rows: those of log.csv carry on
    save_training_state(tmp_path / "resumed" / "last.pth", state)
    train(tmp_path / "resumed", *builtin_flags, *schedule, "--epochs", "2", "--resume")
    assert_same_weights(weights(tmp_path / "straight"), weights(tmp_path / "resumed"))
    assert load_training_state(tmp_path / "resumed" / "last.pth")["epoch"] == 2
    logs = [list(csv.DictReader((tmp_path / run / "log.csv").open())) for run in ("straight", "resumed")]
    assert [r["epoch"] for r in logs[1]] == ["1", "2"]
    assert [r["lr"] for r in logs[0]] == [r["lr"] for r in logs[1]]


def training_batches(monkeypatch, store_dir: Path, data_flags: list[str], workers: int) -> list[torch.Tensor]:
    """The augmented images each epoch of a real run feeds to training (its steps replaced by a recorder)."""
    seen = []

    def record(model, loader, *args, **kwargs) -> EpochStats:
        seen.append(torch.cat([images for images, _ in loader]))
        return EpochStats(PassScore(loss=0.0, images=len(seen[-1]), accuracy=0.0), seconds=1.0)

    monkeypatch.setattr(utils.training.trainer, "train_one_epoch", record)
    # 24 images in batches of 8: no batch is dropped, so every epoch sees every image
    train(store_dir, *data_flags, "--epochs", "2", "--fraction", "0.2", "--batch_size", "8", "--workers", str(workers))
    return seen


def test_persistent_workers_see_every_epoch(tmp_path, builtin_flags, monkeypatch):
    """The epoch reaches persistent loader workers: new augmentations each epoch, the same as without workers."""
    with_workers = training_batches(monkeypatch, tmp_path / "w2", builtin_flags, workers=2)
    in_process = training_batches(monkeypatch, tmp_path / "w0", builtin_flags, workers=0)

    def reordering_invariant(images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1).sum(1).sort().values

    replayed = torch.equal(reordering_invariant(with_workers[0]), reordering_invariant(with_workers[1]))
    assert not replayed, "epoch 1 saw epoch 0's augmented images in another order"
    for epoch in range(2):
        assert torch.equal(with_workers[epoch], in_process[epoch]), epoch


def start_cli(*flags) -> subprocess.Popen:
    """main_INets.py in its own process group (its loader workers die with it), output kept for failures."""
    return subprocess.Popen([sys.executable, "main_INets.py", *map(str, flags)], cwd=REPO, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    return output


def test_killed_run_resumes_exactly_with_default_flags(tmp_path, builtin_flags):
    """Default --workers (persistent loader workers), no --fixed: SIGKILL during epoch 2, then --resume; the
    weights equal those of an uninterrupted run bit for bit."""
    flags = ["--model", "resnet18", "--imsize", "32", "--batch_size", "16", "--fraction", "0.3", "--seed", "3",
             "--epochs", "2", *builtin_flags]
    straight = start_cli(*flags, "--store_dir", tmp_path / "straight")
    killed_dir = tmp_path / "killed"
    killed = start_cli(*flags, "--store_dir", killed_dir)
    deadline = time.time() + 240
    while not (killed_dir / "last.pth").exists():
        assert killed.poll() is None and time.time() < deadline, killed.communicate()[0][-3000:]
        time.sleep(0.02)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.communicate()
    assert load_training_state(killed_dir / "last.pth")["epoch"] == 1, "the kill did not land in epoch 2"
    finish(start_cli(*flags, "--store_dir", killed_dir, "--resume"))
    log = finish(straight)  # a pipe, not a terminal: plain lines (the last step of each epoch), no bars
    assert not re.search(r"\r|\d+%\|", log) and re.search(r"^epoch 2 step 2/2 loss ", log, re.M)
    resumed, uninterrupted = weights(killed_dir), weights(tmp_path / "straight")
    assert resumed.keys() == uninterrupted.keys()
    assert [key for key in resumed if not torch.equal(resumed[key], uninterrupted[key])] == []


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_run_folder_is_reused_only_on_purpose(tmp_path, builtin_flags, monkeypatch):
    run = tmp_path / "run"
    short = [*TINY, *builtin_flags, "--epochs", "1", "--fraction", "0.2", "--store_dir", str(run)]
    main_INets.main([*short, "--s_iterations", "1"])
    gap_state = tmp_path / "gap_last.pth"
    gap_state.write_bytes((run / "last.pth").read_bytes())
    (run / "notes.txt").write_text("not the run's")
    before = folder_bytes(run)
    message = error_of([*short, "--pool", "ca"])
    assert str(run) in message and "--resume" in message and "--overwrite" in message
    assert folder_bytes(run) == before
    assert "give one" in error_of([*short, "--resume", "--overwrite"])

    folder_at_config = []
    replace = os.replace

    def replace_and_look(source, target):
        replace(source, target)
        if Path(target).name == "config.json":
            folder_at_config.append(sorted(path.name for path in run.iterdir()))

    monkeypatch.setattr(os, "replace", replace_and_look)
    main_INets.main([*short, "--pool", "ca", "--overwrite"])
    monkeypatch.undo()
    # the new config.json never stood beside the previous run's weights, and a file not of the layout stays (the
    # run's lock is held meanwhile)
    assert folder_at_config == [[LOCK_NAME, "config.json", "notes.txt"]]
    assert not (run / "checkpoint_epoch1.pth").exists() and (run / "notes.txt").read_text() == "not the run's"
    model, config = load_trained_model(str(run))
    assert config["pool"] == model.pool == "ca"

    # --resume with pool gap: not the network of the folder's config.json, whichever state resumes
    message = error_of([*short, "--resume", str(gap_state)])
    assert "config.json" in message and "pool" in message
    (run / "last.pth").unlink()  # as if killed before its first epoch committed
    message = error_of([*short, "--resume"])
    assert "config.json" in message and "pool" in message


def test_kill_at_every_write_point_loses_nothing(tmp_path, builtin_flags):
    """SIGKILL before and after every atomic write of a run (tests/kill_chain.py), resuming after each kill:
    the finished folder equals an uninterrupted run's, with every log row, due checkpoint and TensorBoard value
    exactly once and no temporary left."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    flags = [*TINY, *builtin_flags, "--pool", "ca", "--freeze", "--epochs", "2", "--s_iterations", "1",
             "--fraction", "0.1", "--batch_size", "4"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    main_INets.main([*flags, "--store_dir", str(straight)])
    result = subprocess.run([sys.executable, "-m", "tests.kill_chain", str(killed), *flags], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    chain = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"{len(chain['kills'])} kills in {chain['seconds']} s")
    uninterrupted, resumed = weights(straight), weights(killed)
    assert [key for key in uninterrupted if not torch.equal(uninterrupted[key], resumed[key])] == []
    logs = [[{k: v for k, v in row.items() if k != "images_per_s"} for row in csv.DictReader((run / "log.csv").open())]
            for run in (straight, killed)]
    assert [row["epoch"] for row in logs[1]] == ["1", "2"] and logs[1] == logs[0]
    for epoch in (1, 2):
        assert load_training_state(killed / f"checkpoint_epoch{epoch}.pth")["epoch"] == epoch
    assert [path for path in killed.rglob("*") if path.name.endswith(".tmp")] == []
    events = EventAccumulator(str(killed / "tensorboard"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert set(scalars) == {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_s"}
    for tag in scalars:
        assert [event.step for event in events.Scalars(tag)] == [1, 2], tag
    # every write of every epoch was a kill point
    every_epoch_write = {f"{when} epoch {epoch}: {name}" for when in ("before", "after") for epoch in (1, 2)
                         for name in (f"checkpoint_epoch{epoch}.pth", "model.safetensors", "log.csv", "last.pth")}
    assert every_epoch_write <= set(chain["kills"])
    assert {"before start: config.json", "after start: log.csv"} <= set(chain["kills"])


def test_two_processes_equal_one_with_same_global_batch(tmp_path, small_builtin, builtin_flags):
    # BatchNorm is frozen here (the paper's protocol), so per-process batches see the same statistics.
    gap_run = tmp_path / "gap"
    train(gap_run, *builtin_flags, "--epochs", "1", "--fraction", "0.3")
    common = [*TINY, *builtin_flags, "--epochs", "1", "--pool", "ca", "--freeze", "--init_from", str(gap_run),
              "--lr", "1e-2"]
    single = tmp_path / "single"
    main_INets.main([*common, "--store_dir", str(single), "--batch_size", "16"])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "main_INets.py",
         *common, "--store_dir", str(tmp_path / "ddp"), "--batch_size", "8"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # Gradients are averaged in another order, and AdamW divides by sqrt(v): a few weights differ by ~1e-5.
    assert_same_weights(weights(single), weights(tmp_path / "ddp"), atol=5e-5)
    single_weights, gap_weights = weights(single), weights(gap_run)
    changed = [k for k in single_weights if not torch.equal(single_weights[k], gap_weights.get(k, torch.zeros(0)))]
    assert changed and all(k.startswith("stream.") for k in changed)


def test_freeze_changes_only_the_stream(tmp_path, builtin_flags):
    gap_run = tmp_path / "gap"
    train(gap_run, *builtin_flags, "--epochs", "1", "--fraction", "0.3")
    ca_run = tmp_path / "ca"
    train(ca_run, *builtin_flags, "--epochs", "1", "--fraction", "0.3", "--pool", "ca", "--freeze",
          "--init_from", str(gap_run))
    gap, ca = weights(gap_run), weights(ca_run)
    for key, value in gap.items():  # backbone, classifier and BatchNorm running statistics
        assert torch.equal(ca[key], value), key
    initial = create_model("resnet18", pool="ca", num_classes=6)
    stream_keys = [k for k in ca if k.startswith("stream.blocks")]
    assert stream_keys and any(not torch.equal(ca[k], initial.state_dict()[k]) for k in stream_keys)


def test_mixup_warmup_ema_channels_last_and_yaml_config(tmp_path, builtin_flags):
    config = tmp_path / "recipe.yaml"
    config.write_text("epochs: 2\nmixup: 0.2\ncutmix: 1.0\nsmoothing: 0.1\nwarmup_epochs: 1\nema: true\n"
                      "ema_decay: 0.9\nclip_grad: 1.0\nchannels_last: true\nlr: 0.5\n")
    run = tmp_path / "run"
    train(run, *builtin_flags, "--fraction", "0.3", "--config", str(config), "--lr", "1e-3")
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert len(rows) == 2 and float(rows[0]["lr"]) < 1e-3  # warm-up, and the flag overrode the file's lr
    assert (run / "model_ema.safetensors").is_file()
    ema, model = load_file(str(run / "model_ema.safetensors")), weights(run)
    assert any(not torch.equal(ema[k], model[k]) for k in model)
    assert "mixup: 0.2" in (run / "args.yaml").read_text()


def test_a_log_file_gets_plain_lines_not_progress_bars(tmp_path, builtin_flags, monkeypatch, capsys):
    """stderr is a file, as in a batch job: no bar redraws anywhere, a plain line every --log_interval steps."""
    with (tmp_path / "job.err").open("w") as stderr:
        monkeypatch.setattr(sys, "stderr", stderr)
        train(tmp_path / "run", *builtin_flags, "--epochs", "1", "--fraction", "0.3", "--batch_size", "8",
              "--log_interval", "2")
    out = capsys.readouterr().out
    assert not re.search(r"\r|\d+%\|", out + (tmp_path / "job.err").read_text())  # no bar, no redraw
    assert re.findall(r"^epoch 1 step (\d+)/4 loss \d+\.\d{4} lr \d\.\d\de-\d\d$", out, re.M) == ["2", "4"]
    assert re.search(r"^epoch 1/1 \| train loss", out, re.M)


def test_unknown_config_key_is_refused(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("epoch: 3\n")
    with pytest.raises(SystemExit):
        main_INets.main(["--config", str(config)])


def test_interrupted_checkpoint_write_leaves_previous_one_loadable(tmp_path):
    path = tmp_path / "last.pth"
    save_training_state(path, {"epoch": 1, "weights": torch.ones(3)})

    def crash_midway(file):
        file.write(b"partial bytes of a checkpoint")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash_midway)
    assert load_training_state(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]


def test_atomic_writes_get_the_mode_a_plain_open_gives(tmp_path):
    """mkstemp's private 0600 must not leak into run folders that a group shares on a cluster."""
    previous = os.umask(0o027)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        written = atomic_write(tmp_path / "atomic.txt", lambda file: file.write(b"x"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(written.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o640


def test_killed_writer_process_leaves_a_loadable_checkpoint(tmp_path):
    path = tmp_path / "last.pth"
    writer = ("import torch\n"
              "from utils.runtime.io import save_training_state\n"
              "big = torch.randn(4_000_000)\n"
              "for epoch in range(1, 10_000):\n"
              "    save_training_state(%r, {'epoch': epoch, 'weights': big})\n") % str(path)
    process = subprocess.Popen([sys.executable, "-c", writer], cwd=REPO)
    deadline = time.time() + 60
    while not path.exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    process.send_signal(signal.SIGKILL)
    process.wait()
    state = load_training_state(path)
    assert state["epoch"] >= 1 and state["weights"].numel() == 4_000_000


def test_missing_root_data(tmp_path):
    message = error_of(["--root_data", str(tmp_path / "nowhere"), "--store_dir", str(tmp_path / "r")])
    assert "--root_data" in message and "nowhere" in message


def test_empty_list(tmp_path, small_builtin):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    message = error_of(["--root_data", str(small_builtin / "images"), "--path_list", str(empty),
                        "--store_dir", str(tmp_path / "r")])
    assert "empty.csv" in message


def test_label_outside_classes(tmp_path, small_builtin):
    bad = tmp_path / "labels.csv"
    rows = (small_builtin / "train.csv").read_text().splitlines()[:3]
    bad.write_text("\n".join(rows[:2] + [rows[2].rsplit(",", 1)[0] + ",9"]) + "\n")
    message = error_of(["--root_data", str(small_builtin / "images"), "--path_list", str(bad), "--classes", "6",
                        "--store_dir", str(tmp_path / "r")])
    assert "labels.csv:3" in message and "--classes 6" in message


def relabelled_list(path: Path, small_builtin: Path, labels: list[int]) -> Path:
    """A list of the built-in training images with the given labels (line i+1 gets labels[i])."""
    images = [line.rsplit(",", 1)[0] for line in (small_builtin / "train.csv").read_text().splitlines()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{image},{label}\n" for image, label in zip(images, labels)))
    return path


@pytest.mark.parametrize("bad_label", [9, -1])
def test_label_outside_the_classes_of_classes_txt(tmp_path, small_builtin, bad_label):
    """Without --classes, a classes.txt beside the list bounds the labels; negative labels are always refused."""
    listing = relabelled_list(tmp_path / "lists" / "train.csv", small_builtin, [0, 1, 2, 3, 4, 5, 0, bad_label])
    (listing.parent / "classes.txt").write_text((small_builtin / "classes.txt").read_text())
    message = error_of([*TINY, "--root_data", str(small_builtin / "images"), "--path_list", str(listing),
                        "--store_dir", str(tmp_path / "r")])
    assert f"train.csv:8: label {bad_label} is" in message
    assert ("classes.txt" if bad_label > 0 else "negative") in message


def test_labels_without_class_names(tmp_path, small_builtin):
    """No --classes and no classes.txt: labels must leave no class empty, and a validation label must be one of
    the classes training builds."""
    data = ["--root_data", str(small_builtin / "images"), "--store_dir", str(tmp_path / "r")]
    gaps = relabelled_list(tmp_path / "gaps" / "train.csv", small_builtin, [0, 1, 2, 5, 0, 1, 2, 5])
    message = error_of([*TINY, *data, "--path_list", str(gaps)])
    assert "no sample has label 3, 4" in message and "--classes 6" in message
    train_list = relabelled_list(tmp_path / "ok" / "train.csv", small_builtin, [0, 1, 2, 0, 1, 2])
    val_list = relabelled_list(tmp_path / "ok" / "val.csv", small_builtin, [0, 1, 2, 3])
    message = error_of([*TINY, *data, "--path_list", str(train_list), "--val_list", str(val_list)])
    assert "val.csv:4: label 3 is outside [0, 3)" in message


def test_val_csv_beside_a_list_file_is_the_validation_list(tmp_path, small_builtin, capsys):
    lists = tmp_path / "lists"
    lists.mkdir()
    for name in ("train.csv", "val.csv", "classes.txt"):
        (lists / name).write_bytes((small_builtin / name).read_bytes())
    args = main_INets.build_parser().parse_args([
        *TINY, "--root_data", str(small_builtin / "images"), "--path_list", str(lists / "train.csv"), "--heads", "1",
        "--no-pretrained", "--store_dir", str(tmp_path / "r")])
    trainer = Trainer(settings_from_flags(args))
    assert (len(trainer.train_set), len(trainer.val_set)) == (120, 48)  # all of train.csv, all of val.csv
    assert f"validation: list {lists / 'val.csv'}" in capsys.readouterr().out


def test_corrupt_image(tmp_path, small_builtin):
    images = tmp_path / "images"
    images.mkdir()
    (images / "broken.png").write_bytes(b"\x89PNG but not really")
    listing = tmp_path / "list.csv"
    listing.write_text("broken.png,0\nbroken.png,1\n")
    message = error_of([*TINY, "--root_data", str(images), "--path_list", str(listing), "--val_split", "0",
                        "--batch_size", "2", "--store_dir", str(tmp_path / "r")])
    assert "cannot read image" in message and "broken.png" in message


def test_init_from_another_architecture(tmp_path, builtin_flags):
    other = tmp_path / "r34.pth"
    torch.save(create_model("resnet34", num_classes=6).state_dict(), other)
    message = error_of([*TINY, *builtin_flags, "--pool", "ca", "--init_from", str(other),
                        "--store_dir", str(tmp_path / "r")])
    assert "r34.pth does not fit" in message


def test_resume_with_another_model(tmp_path, builtin_flags):
    run = tmp_path / "run"
    train(run, *builtin_flags, "--epochs", "1", "--fraction", "0.2")
    message = error_of([*TINY, *builtin_flags, "--model", "resnet34", "--epochs", "2", "--resume",
                        "--store_dir", str(run)])
    assert "--resume" in message and "resnet18" in message and "resnet34" in message


def test_seed_readme_training_example(tmp_path, small_builtin):
    """The paper README's command, with an image-folder root (one sub-folder per class) and --path_list data/."""
    store = tmp_path / "store"
    result = subprocess.run(
        [sys.executable, "main_INets.py", "--root_data", str(small_builtin / "images" / "train"), "--path_list",
         "data/", "--model", "resnet18", "--classes", "6", "--epochs", "2", "--imsize", "32", "--store_dir",
         str(store), "--batch_size", "16", "--s_iterations", "1", "--fixed", "--seed", "0", "--criterion",
         "CrossEntropy", "--workers", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "epoch 2/2" in result.stdout and f"run folder: {store}" in result.stdout
    assert (store / "checkpoint_epoch1.pth").is_file() and (store / "checkpoint_epoch2.pth").is_file()
    assert load_training_state(store / "checkpoint_epoch1.pth")["epoch"] == 1
