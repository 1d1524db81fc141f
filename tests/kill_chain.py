"""Test driver: one run of a script killed with SIGKILL at every atomic write point in turn, resumed after each kill.

    python -m tests.kill_chain STORE_DIR MAIN_INETS_FLAGS...    (from the repository root)
    python -m tests.kill_chain --script recognition_imagenet STORE_DIR FLAGS...     (or objrecon_imagenet)
    python -m tests.kill_chain --script objrecon_imagenet --sample 0.5 STORE_DIR FLAGS...

Each attempt is a child forked from this process (the imports are paid once) that runs
``<script>.main([*flags, "--store_dir", STORE_DIR, "--resume"])`` (default script: main_INets) with ``os.replace``
wrapped: the child kills itself before or after the first replace whose point it has not been killed at yet. A point
is the written file's name and when it is written: at start-up, or (training) in the save of epoch N; an evaluation's
shard files and final files each have a name of their own. ``--sample F`` kills at a fixed random fraction F of the
points only (chosen by a hash of the point's name: the same points in every attempt). Attempts go on until one
finishes; the visited points are printed as JSON on the last line of stdout.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

import utils.training.trainer

SCRIPTS = ("main_INets", "recognition_imagenet", "objrecon_imagenet")


def _sampled(point: str, fraction: float) -> bool:
    return int(hashlib.sha256(point.encode()).hexdigest()[:8], 16) < fraction * 16 ** 8


def _attempt(script: str, argv: list[str], visited: set[str], report_fd: int, fraction: float) -> None:
    """The child: runs ``script``, and dies at the first point not visited yet (reported through ``report_fd``)."""
    replace = os.replace
    phase = ["start"]
    train_one_epoch = utils.training.trainer.train_one_epoch

    def train_and_note_epoch(*args, **kwargs):
        phase[0] = f"epoch {kwargs.get('epoch', args[5]) + 1}"
        return train_one_epoch(*args, **kwargs)

    def die_if_new(point: str) -> None:
        if point not in visited and _sampled(point, fraction):
            os.write(report_fd, (point + "\n").encode())
            os.kill(os.getpid(), signal.SIGKILL)

    def replace_or_die(source, target) -> None:
        where = f"{phase[0]}: {Path(target).name}"
        die_if_new(f"before {where}")
        replace(source, target)
        die_if_new(f"after {where}")

    os.replace = replace_or_die
    utils.training.trainer.train_one_epoch = train_and_note_epoch
    importlib.import_module(script).main(argv)


def run_chain(store_dir: str, flags: list[str], script: str = "main_INets", fraction: float = 1.0) -> dict:
    if script not in SCRIPTS:
        raise SystemExit(f"--script must be one of {', '.join(SCRIPTS)}, got {script}")
    importlib.import_module(script)  # imported once, before the forks
    argv = [*flags, "--store_dir", store_dir, "--resume"]
    visited: list[str] = []
    started = time.perf_counter()
    while True:
        read_fd, write_fd = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(read_fd)
            try:
                _attempt(script, argv, set(visited), write_fd, fraction)
                code = 0
            except BaseException:
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        os.close(write_fd)
        _, status = os.waitpid(child, 0)
        with os.fdopen(read_fd) as report:
            point = report.read().strip()
        if os.WIFEXITED(status):
            if os.WEXITSTATUS(status) != 0:
                raise SystemExit(f"attempt {len(visited) + 1} failed (see its traceback above)")
            break
        if os.WTERMSIG(status) != signal.SIGKILL or not point:
            raise SystemExit(f"attempt {len(visited) + 1} died of signal {os.WTERMSIG(status)} at no write point")
        visited.append(point)
    return {"kills": visited, "seconds": round(time.perf_counter() - started, 1)}


if __name__ == "__main__":
    arguments = sys.argv[1:]
    options = {"--script": "main_INets", "--sample": "1"}
    while arguments[:1] and arguments[0] in options:
        options[arguments[0]], arguments = arguments[1], arguments[2:]
    print(json.dumps(run_chain(arguments[0], arguments[1:], options["--script"], float(options["--sample"]))))
