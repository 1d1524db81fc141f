"""Test driver: one training run killed with SIGKILL at every atomic write point in turn, resumed after each kill.

    python -m tests.kill_chain STORE_DIR MAIN_INETS_FLAGS...    (from the repository root)

Each attempt is a child forked from this process (the imports are paid once) that runs
``main_INets.main([*flags, "--store_dir", STORE_DIR, "--resume"])`` with ``os.replace`` wrapped: the child kills
itself before or after the first replace whose point it has not been killed at yet. A point is the written file's
name and when it is written: at start-up, or in the save of epoch N. Attempts go on until one finishes; the
visited points are printed as JSON on the last line of stdout.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

import main_INets
import utils.training.trainer


def _attempt(argv: list[str], visited: set[str], report_fd: int) -> None:
    """The child: trains, and dies at the first point not visited yet (reported through ``report_fd``)."""
    replace = os.replace
    phase = ["start"]
    train_one_epoch = utils.training.trainer.train_one_epoch

    def train_and_note_epoch(*args, **kwargs):
        phase[0] = f"epoch {kwargs.get('epoch', args[5]) + 1}"
        return train_one_epoch(*args, **kwargs)

    def die_if_new(point: str) -> None:
        if point not in visited:
            os.write(report_fd, (point + "\n").encode())
            os.kill(os.getpid(), signal.SIGKILL)

    def replace_or_die(source, target) -> None:
        where = f"{phase[0]}: {Path(target).name}"
        die_if_new(f"before {where}")
        replace(source, target)
        die_if_new(f"after {where}")

    os.replace = replace_or_die
    utils.training.trainer.train_one_epoch = train_and_note_epoch
    main_INets.main(argv)


def run_chain(store_dir: str, flags: list[str]) -> dict:
    argv = [*flags, "--store_dir", store_dir, "--resume"]
    visited: list[str] = []
    started = time.perf_counter()
    while True:
        read_fd, write_fd = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(read_fd)
            try:
                _attempt(argv, set(visited), write_fd)
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
    print(json.dumps(run_chain(sys.argv[1], sys.argv[2:])))
