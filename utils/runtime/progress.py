"""Progress bars belong on a terminal: a batch job's log file would keep every redraw of a bar (it gets lines)."""
from __future__ import annotations

import contextlib
import sys
import time
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


class PlainCount:
    """A count for a log file: a line ``desc: done/total unit (rate)`` at every tenth of ``total`` and at the end,
    where a progress bar would be redrawn (the interface of the tqdm bar it stands for: ``update``, ``close``)."""

    STEPS = 10

    def __init__(self, total: int, desc: str, unit: str) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.done, self.shown = 0, 0
        self.began = time.perf_counter()

    def update(self, count: int = 1) -> None:
        self.done += count
        if self.done * self.STEPS // max(self.total, 1) > self.shown * self.STEPS // max(self.total, 1) \
                or self.done == self.total:
            self.shown = self.done
            rate = self.done / max(time.perf_counter() - self.began, 1e-9)
            print(f"{self.desc}: {self.done}/{self.total} {self.unit} ({rate:.1f} {self.unit}/s)", file=sys.stderr,
                  flush=True)

    def close(self) -> None:
        pass

    def __enter__(self) -> PlainCount:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def counter(total: int, enabled: bool, desc: str, unit: str) -> contextlib.AbstractContextManager:
    """A count of ``total`` ``unit``s with ``update(n)``: a tqdm bar on a terminal, plain lines (:class:`PlainCount`)
    in a log file, nothing where not ``enabled`` (the caller decides: rank 0)."""
    if not enabled:
        from tqdm.auto import tqdm
        return tqdm(total=total, disable=True)
    if on_terminal():
        from tqdm.auto import tqdm
        return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)
    return PlainCount(total, desc, unit)
