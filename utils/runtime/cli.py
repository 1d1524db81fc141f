"""Pieces the three command-line scripts share: YAML configs of flags, one-line user errors."""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Callable, Optional, Sequence

import yaml


def error_line(error: BaseException) -> str:
    """One line for a user error. An error raised in a DataLoader worker arrives wrapped ("Caught OSError in
    DataLoader worker process 0." and the worker's traceback): its last line is the original message."""
    text = str(error).strip()
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = text.splitlines()[-1]
        prefix = f"{type(error).__name__}: "
        return last[len(prefix):] if last.startswith(prefix) else last
    return text.splitlines()[0] if text else type(error).__name__


def run_or_exit(run: Callable[[argparse.Namespace], dict], args: argparse.Namespace) -> dict:
    """``run(args)``, a user error (ValueError, OSError) ending the program with one line: ``error: ...``."""
    try:
        return run(args)
    except (ValueError, OSError) as error:
        # the frames of the error's traceback hold what the run held (a DataLoader iterator and its worker
        # processes), in a reference cycle when the error was re-raised from a worker: clearing them ends the
        # workers now, not at a garbage collection during whatever the caller does next
        traceback.clear_frames(error.__traceback__)
        raise SystemExit(f"error: {error_line(error)}") from None


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", default=None,
                        help="YAML file of flag values (keys = flag names without dashes); flags given on the "
                             "command line override it")


def parse_args(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parses ``argv`` with the values of ``--config`` as defaults, so command-line flags win."""
    argv = sys.argv[1:] if argv is None else list(argv)
    pre, _ = parser.parse_known_args(argv)
    if getattr(pre, "config", None):
        path = Path(pre.config)
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            parser.error(f"--config {path}: {error}".splitlines()[0])
        if not isinstance(values, dict):
            parser.error(f"--config {path}: expected a mapping of flag names to values")
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(values) - known)
        if unknown:
            parser.error(f"--config {path}: unknown keys {', '.join(unknown)}")
        parser.set_defaults(**values)
    return parser.parse_args(argv)
