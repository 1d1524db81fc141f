"""Small shortcuts the tests share."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest

import main_INets
from utils.runtime.layout import EvaluationFolder


def maps_file(folder: Path, method: str) -> Path:
    return EvaluationFolder(folder).maps(method)


def read_maps(folder: Path, method: str) -> dict:
    return EvaluationFolder.load_maps(maps_file(folder, method))


def one_line_error(main: Callable[[list[str]], object], argv: list[str]) -> str:
    """The one-line error a script's ``main`` exits with for ``argv``."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    message = str(info.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    return message


def error_of(argv: list[str]) -> str:
    """main_INets.py's one-line error for ``argv``."""
    return one_line_error(main_INets.main, argv)


def sbatch_python_argv(routine: Path, tmp_path: Path, env_extra: dict[str, str], *args: str) -> list[str]:
    """The command line an sbatch ``routine`` gives python, run by bash with srun, scontrol and python stubbed (no
    cluster needed)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    argv_file = tmp_path / "argv.json"
    stubs = {
        "srun": '#!/bin/bash\nwhile [[ $1 == -* ]]; do shift; done\nexec "$@"\n',  # srun's options, then CMD
        "scontrol": "#!/bin/bash\nexit 0\n",
        "fake-python": f"#!{sys.executable}\nimport json, sys\n"
                       f"json.dump(sys.argv[1:], open({str(argv_file)!r}, 'w'))\n",
    }
    for name, text in stubs.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", PYTHON=str(bin_dir / "fake-python"),
               SLURM_SUBMIT_DIR=str(Path(__file__).resolve().parents[1]), SLURM_JOB_ID="1", **env_extra)
    result = subprocess.run(["bash", str(routine), *args], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(argv_file.read_text())


def label_matrix(dataset) -> np.ndarray:
    """(N, C) int8 label vectors of every row of a multi-label dataset."""
    return np.asarray(dataset.targets, dtype=np.int8).reshape(len(dataset.targets), len(dataset.classes))


def require_installed(missing: Optional[str], required: bool = False) -> None:
    """Skips the test when a system package is ``missing`` (the reason); fails instead when ``required`` or under CI,
    which installs them all (.ci/run): a test CI skips is a test that cannot fail."""
    if missing is None:
        return
    if required or os.environ.get("CI"):
        pytest.fail(missing)
    pytest.skip(missing)
