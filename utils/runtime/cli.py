"""Pieces the three command-line scripts share: YAML configs of flags, one-line user errors."""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

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


def _typed(action: argparse.Action, key: str, value: Any) -> Any:
    """One value of a config key, as the flag's type would read it from the command line, or ValueError."""
    expected = action.type
    if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{key}: expected an integer, got {value!r}")
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key}: expected a number, got {value!r}")
        value = float(value)
    if (expected is None or expected is str) and isinstance(value, (list, dict, bool)):
        raise ValueError(f"{key}: expected a single value, got {value!r}")
    if (expected is None or expected is str) and value is not None:
        value = str(value)
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{key}: {value!r} is not one of {', '.join(map(str, action.choices))}")
    return value


def config_value(action: argparse.Action, value: Any) -> Any:
    """A config file's value of the flag ``action``, checked against what the flag accepts (its type, count and
    choices) when the file is read, so that ``epochs: 1.5`` or ``freeze: "no"`` fail before any work, naming the key.
    A single value of a list flag (``milestones: 5``) is a list of one."""
    key = action.dest
    if value is None:
        return None
    if action.nargs == 0:  # store_true / store_false / --x/--no-x: YAML's true or false
        if not isinstance(value, bool):
            raise ValueError(f"{key}: expected true or false, got {value!r}")
        return value
    if action.nargs in ("+", "*") or isinstance(action.nargs, int) or isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        if isinstance(action.nargs, int) and len(items) != action.nargs:
            raise ValueError(f"{key}: expected {action.nargs} values, got {value!r}")
        if action.nargs == "+" and not items:
            raise ValueError(f"{key}: expected at least one value, got {value!r}")
        return [_typed(action, key, item) for item in items]
    return _typed(action, key, value)


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
        actions = {action.dest: action for action in parser._actions}
        unknown = sorted(set(values) - set(actions))
        if unknown:
            parser.error(f"--config {path}: unknown keys {', '.join(unknown)}")
        try:
            values = {key: config_value(actions[key], value) for key, value in values.items()}
        except ValueError as error:
            parser.error(f"--config {path}: {error}")
        parser.set_defaults(**values)
    return parser.parse_args(argv)
