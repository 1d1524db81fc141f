"""Progress bars belong on a terminal: a batch job's log file would keep every redraw of a bar."""
from __future__ import annotations

import sys
from typing import Iterable, TypeVar

Item = TypeVar("Item")


def on_terminal() -> bool:
    return sys.stderr.isatty()


def progress(iterable: Iterable[Item], enabled: bool, **tqdm_kwargs) -> Iterable[Item]:
    """``iterable`` with a tqdm bar when ``enabled`` (the caller decides: rank 0, on a terminal), else as is."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, dynamic_ncols=True, **tqdm_kwargs)
