"""A run's per-epoch log: ``log.csv`` and the TensorBoard scalars, one row per epoch.

Both are rebuilt from the rows of the training state at every start: rows of an epoch that never committed are
dropped, and rows that a kill kept from reaching the files are written again.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from utils.runtime.io import write_error
from utils.runtime.layout import RunFolder


class RunLog:
    def __init__(self, folder: RunFolder, rows: Sequence[Mapping]) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imported late: start-up of the other scripts

        self.folder = folder
        self.rows = [dict(row) for row in rows]
        for path in folder.event_files():
            path.unlink()
        self.writer = SummaryWriter(str(folder.tensorboard))
        for row in self.rows:
            self._add_scalars(row)
        self.writer.flush()
        if self.rows:
            folder.write_log(self.rows)
        else:
            folder.log.unlink(missing_ok=True)

    def _add_scalars(self, row: Mapping) -> None:
        for key, value in row.items():
            if key != "epoch" and value != "":
                self.writer.add_scalar(key, float(value), int(row["epoch"]))

    def append(self, row: Mapping) -> None:
        self.rows.append(dict(row))
        try:
            self._add_scalars(row)
            self.writer.flush()
        except OSError as error:  # raised by the writer's thread on the next write: name the folder it writes
            raise write_error(self.folder.tensorboard, error) from None
        self.folder.write_log(self.rows)

    def close(self) -> None:
        self.writer.close()
