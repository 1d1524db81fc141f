"""routines/evaluation/*.sbatch, run by bash with srun/scontrol/python stubbed (no cluster needed): each gives its
script a command line that the script's parser accepts, always with --resume, and asks SLURM for the requeue and the
USR1 warning as the training routines do (the USR1 path itself: runtime/test_slurm.py)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import objrecon_imagenet
import recognition_imagenet
from tests.helpers import sbatch_python_argv
from utils.runtime.cli import parse_args

REPO = Path(__file__).resolve().parents[2]
PARSERS = {"recognition": recognition_imagenet.build_parser, "objrecon": objrecon_imagenet.build_parser}


def sbatch_argv(tmp_path: Path, script: str, env_extra: dict[str, str], *args: str) -> list[str]:
    return sbatch_python_argv(REPO / "routines" / "evaluation" / f"{script}.sbatch", tmp_path, env_extra, *args)


@pytest.mark.parametrize("script", sorted(PARSERS))
def test_evaluation_routines_resume_and_requeue(script, tmp_path):
    text = (REPO / "routines" / "evaluation" / f"{script}.sbatch").read_text()
    assert "#SBATCH --requeue" in text and "#SBATCH --signal=B:USR1@" in text
    assert "source routines/training/common.sh" in text  # the USR1 trap that requeues, and `launch`

    argv = sbatch_argv(tmp_path, script, {"STATE_ROOT": "Experiments/imagenet_resnet50_ca",
                                          "ROOT_DATA": "/data/imagenet/val"}, "--batch_size", "16")
    assert argv[0] == f"{script}_imagenet.py"
    args = parse_args(PARSERS[script](), argv[1:])
    assert args.resume and args.use_gpu and args.batch_size == 16  # the extra arguments override the defaults
    assert (args.state_root, args.root_data, args.path_lbl) == (
        "Experiments/imagenet_resnet50_ca", "/data/imagenet/val", "data/imagenet_val.csv")
    assert args.store_dir == "Evaluation/imagenet_resnet50_ca"  # objrecon reads recognition's maps there
    if script == "recognition":
        assert args.salient and args.method == ["gradcam", "attention"]

    # on CPU ranks, on the built-in dataset
    argv = sbatch_argv(tmp_path, script, {"STATE_ROOT": "runs/ca", "USE_GPU": "0", "STORE_DIR": "Evaluation/x"})
    args = parse_args(PARSERS[script](), argv[1:])
    assert args.resume and not args.use_gpu and args.root_data is None and args.store_dir == "Evaluation/x"


def test_evaluation_routines_need_a_run(tmp_path):
    bin_dir = tmp_path / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("STATE_ROOT",) and not k.startswith("SLURM_")}
    env.update(SLURM_SUBMIT_DIR=str(REPO), PATH=f"{bin_dir}:{env['PATH']}")
    for script in PARSERS:
        result = subprocess.run(["bash", str(REPO / "routines" / "evaluation" / f"{script}.sbatch")], env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode != 0 and "set STATE_ROOT" in result.stderr
