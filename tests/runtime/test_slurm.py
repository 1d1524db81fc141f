"""Real SLURM jobs on a private single-node cluster (tests/slurm_cluster.py).

Skipped when SLURM/MUNGE are not installed or we are not root (CI installs them with
`.ci/install_slurm.sh`; set CASTREAM_REQUIRE_SLURM=1 to make that a failure instead of a skip).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import require_installed, sbatch_python_argv
from tests.slurm_cluster import SlurmCluster, unavailable_reason

REPO = Path(__file__).resolve().parents[2]
BUILTIN_SBATCH = REPO / "routines" / "training" / "builtin.sbatch"
# one epoch of a small model on a small built-in dataset: equal weights expected from both launchers
TINY_FLAGS = ["--model", "resnet18", "--pool", "ca", "--classes", "6", "--epochs", "1", "--imsize", "32",
              "--batch_size", "8", "--fixed", "--seed", "0", "--workers", "0"]


@pytest.fixture(scope="module")
def cluster():
    require_installed(unavailable_reason(), required=bool(os.environ.get("CASTREAM_REQUIRE_SLURM")))
    with SlurmCluster() as c:
        yield c


def _job_env(**extra: str) -> dict[str, str]:
    # sbatch exports the submitting environment to the job (--export=ALL)
    return {"PYTHON": sys.executable, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}


def _expect_completed(cluster: SlurmCluster, job: int, timeout: float) -> dict[str, str]:
    info = cluster.wait_job(job, timeout=timeout)
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), (
        f"job {job}: {info['JobState']} exit {info['ExitCode']}\n{cluster.job_output(info)}")
    return info


@pytest.mark.parametrize("script", ["builtin", "imagenet", "mit67", "voc"])
def test_sbatch_scripts_pass_flags_main_accepts(script, tmp_path):
    """Each routines/training script, run by bash with srun/scontrol/python stubbed (no cluster
    needed), gives main_INets.py a command line its parser accepts, always with --resume."""
    argv = sbatch_python_argv(REPO / "routines" / "training" / f"{script}.sbatch", tmp_path,
                              {"ROOT_DATA": "/data/images"}, "--epochs", "3")
    assert argv[0] == "main_INets.py"

    import main_INets
    from utils.runtime.cli import parse_args

    args = parse_args(main_INets.build_parser(), argv[1:])  # with the values of a -c config
    assert args.resume == "auto" and args.epochs == 3
    assert args.use_gpu == (script != "builtin")
    assert (args.root_data is None) == (script == "builtin")
    if script == "builtin":  # fine-tunes the packaged ImageNet weights (--pretrained's default), as the default job
        assert args.model == "tf_efficientnet_lite0" and args.pretrained is None and args.init_from is None
    if script == "voc":  # the reference's PascalOpt: BCE with logits, SGD lr 1e-4, cosine over 12 epochs
        assert (args.dataset, args.criterion, args.opt, args.lr, args.momentum, args.sched, args.classes) == (
            "voc", "BCELogitsLoss", "sgd", 1e-4, 0.9, "cosine", 20)
        assert (args.path_list, args.val_list, args.model, args.pretrained) == ("train", "val", "resnet50", True)


def test_srun_tasks_agree_on_rank_and_rendezvous(cluster, tmp_path):
    """2 tasks under srun: ranks {0, 1} of 2, one master address/port, and a real gloo all-reduce."""
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent(f"""
        import dataclasses, datetime, json, os, torch
        from utils.runtime.distributed import all_reduce_sum, cleanup_distributed, setup_distributed
        env, device = setup_distributed(use_gpu=False, timeout=datetime.timedelta(seconds=60))
        total = all_reduce_sum(torch.tensor([env.rank + 1.0])).item()
        cleanup_distributed()
        result = dict(dataclasses.asdict(env), total=total, device=str(device))
        with open(os.path.join({str(tmp_path)!r}, f"rank{{env.rank}}.json"), "w") as f:
            json.dump(result, f)
    """))
    script = tmp_path / "job.sh"
    script.write_text(f'#!/bin/bash\nset -e\nsrun "$PYTHON" {probe}\n')
    job = cluster.sbatch(script, "--ntasks", "2", "-o", str(tmp_path / "job-%j.out"), env=_job_env())
    _expect_completed(cluster, job, timeout=90)

    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    expected_addr = cluster.env.get("MASTER_ADDR", cluster.node)
    for rank, res in enumerate(results):
        assert (res["rank"], res["world_size"], res["launcher"]) == (rank, 2, "slurm")
        assert res["master_addr"] == expected_addr
        assert res["master_port"] == 10000 + job % 20000
        assert res["total"] == 3.0 and res["device"] == "cpu"
    assert {r["local_rank"] for r in results} == {0, 1}


# the training routine, and the evaluation routines on CPU ranks (the test cluster has no GPUs and few cores)
CPU_RANKS = ("--gpus-per-node", "0", "--ntasks-per-node", "2", "--cpus-per-task", "1")
REQUEUED = {"training": (BUILTIN_SBATCH, {}, ()),
            "recognition": (REPO / "routines" / "evaluation" / "recognition.sbatch",
                            {"STATE_ROOT": "runs/ca", "USE_GPU": "0"}, CPU_RANKS),
            "objrecon": (REPO / "routines" / "evaluation" / "objrecon.sbatch",
                         {"STATE_ROOT": "runs/ca", "USE_GPU": "0"}, CPU_RANKS)}


@pytest.mark.parametrize("routine", sorted(REQUEUED))
def test_sbatch_requeues_on_usr1_and_resumes(cluster, tmp_path, routine):
    """The pre-emption path of the real sbatch scripts, with a stand-in for python.

    USR1 to the batch shell (what `--signal=B:USR1@120` sends before the time limit) must requeue
    the job, and every run must pass --resume.
    """
    script, env, options = REQUEUED[routine]
    stub = tmp_path / "python-stub"
    stub.write_text(textwrap.dedent("""\
        #!/bin/bash
        echo "STUB restart=${SLURM_RESTART_COUNT:-0} rank=$SLURM_PROCID args=$*"
        # first run: keep "training" until pre-empted; after the requeue: finish at once
        if [ "${SLURM_RESTART_COUNT:-0}" = 0 ]; then sleep 120; fi
    """))
    stub.chmod(0o755)
    out = tmp_path / "job.out"
    job = cluster.sbatch(script, "--ntasks", "2", *options, "-o", str(out), cwd=REPO,
                         args=["--store_dir", str(tmp_path / "run")], env=_job_env(PYTHON=str(stub), **env))

    deadline = time.monotonic() + 60
    while not (out.is_file() and out.read_text().count("STUB restart=0") == 2):
        log = out.read_text() if out.is_file() else ""
        assert time.monotonic() < deadline, f"the job did not start its tasks\n{log}"
        time.sleep(0.25)
    cluster.run(["scancel", "--batch", "--signal=USR1", str(job)])

    # SLURM holds a requeued job for 120 s (BeginTime); release it at once
    deadline = time.monotonic() + 60
    while cluster.job_info(job).get("JobState") != "PENDING":
        assert time.monotonic() < deadline, f"job {job} was not requeued\n{out.read_text()}"
        time.sleep(0.25)
    cluster.run(["scontrol", "update", f"JobId={job}", "StartTime=now"])

    info = _expect_completed(cluster, job, timeout=90)
    log = out.read_text()
    assert "got USR1, requeueing" in log
    assert int(info["Restarts"]) == 1
    stub_lines = [line for line in log.splitlines() if line.startswith("STUB")]
    assert len(stub_lines) == 4 and sum("restart=1" in line for line in stub_lines) == 2
    assert all("--resume" in line and str(tmp_path / "run") in line for line in stub_lines)


def test_a_failing_rank_ends_the_job(cluster, tmp_path):
    """Rank 0 failing at start (a run folder in use, a bad flag) ends the job at once, instead of leaving rank 1
    waiting out the rendezvous timeout (srun --kill-on-bad-exit in the routines' `launch`)."""
    stub = tmp_path / "python-stub"
    stub.write_text(textwrap.dedent("""\
        #!/bin/bash
        if [ "$SLURM_PROCID" = 0 ]; then echo "error: --store_dir is in use by another run" >&2; exit 1; fi
        sleep 300
    """))
    stub.chmod(0o755)
    out = tmp_path / "job.out"
    job = cluster.sbatch(BUILTIN_SBATCH, "--ntasks", "2", "-o", str(out), cwd=REPO,
                         args=["--store_dir", str(tmp_path / "run")], env=_job_env(PYTHON=str(stub)))
    info = cluster.wait_job(job, timeout=90)  # far below the 300 s rank 1 would otherwise sleep
    assert info["JobState"] == "FAILED", f"job {job}: {info['JobState']}\n{cluster.job_output(info)}"
    assert "is in use by another run" in out.read_text()


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    return load_file(str(path))


def test_builtin_sbatch_matches_torchrun(cluster, tmp_path):
    """routines/training/builtin.sbatch with 2 SLURM tasks trains the same weights as torchrun with 2 processes."""
    from utils.data import IMAGES_DIRNAME, ensure_builtin_dataset

    data = ensure_builtin_dataset(tmp_path / "builtin", seed=0, imsize=32, train_per_class=8, val_per_class=2)
    flags = [*TINY_FLAGS, "--root_data", str(data / IMAGES_DIRNAME), "--path_list", str(data / "train.csv")]
    env = _job_env(CASTREAM_DATA=str(tmp_path / "cache"))

    slurm_dir = tmp_path / "slurm_run"
    job = cluster.sbatch(BUILTIN_SBATCH, "--ntasks", "2", "-o", str(tmp_path / "slurm.out"), cwd=REPO,
                         args=[*flags, "--store_dir", str(slurm_dir)], env=env)

    torchrun_dir = tmp_path / "torchrun_run"
    clean = {k: v for k, v in cluster.env.items() if k != "SLURM_CONF"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "main_INets.py", *flags, "--store_dir", str(torchrun_dir)],
        cwd=REPO, env=dict(clean, **env), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"torchrun failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"

    _expect_completed(cluster, job, timeout=300)
    for run in (slurm_dir, torchrun_dir):
        for name in ("model.safetensors", "last.pth", "config.json"):
            assert (run / name).is_file(), f"{run / name} missing"
    # same per-epoch losses and accuracies (the last column, images/s, is a timing)
    logs = [[row.rsplit(",", 1)[0] for row in (run / "log.csv").read_text().splitlines()]
            for run in (slurm_dir, torchrun_dir)]
    assert logs[0] == logs[1] and len(logs[0]) == 2
    slurm_w = _load_weights(slurm_dir / "model.safetensors")
    torchrun_w = _load_weights(torchrun_dir / "model.safetensors")
    assert slurm_w.keys() == torchrun_w.keys()
    for key in slurm_w:
        torch.testing.assert_close(slurm_w[key], torchrun_w[key], rtol=0, atol=1e-6, msg=lambda m, k=key: f"{k}: {m}")
