"""Resumable evaluation: the evaluated rows cut into shards of whole batches, each committed as one file.

Shard k is ``shard_batches`` consecutive batches of the evaluated rows (the last one may be shorter), so every image
is computed in the same batch, at the same position, as in an uninterrupted single process, whichever process and
whichever run computes it: CPU kernels give results that depend on the batch size and on the position in the batch
at the 1e-6 level. Its results are committed as ``shards/<script>/shard_<k>.npz`` of the evaluation folder (written
atomically: a run killed at any moment leaves whole shards only) with the fingerprint of what made them; the final
files are assembled from the shards, which are removed once they are written.

``--resume`` computes the shards not committed yet, after checking that the committed ones were made by the same
evaluation (one line naming what differs); without it the shards of an unfinished run are removed (a fresh start).
Under torchrun / SLURM the pending shards are dealt round-robin to the ranks, and the files are assembled from the
committed shards: the ranks must share ``--store_dir``'s file system (a cluster's shared storage), and a resumed run
may have another world size.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence, TypeVar

import numpy as np
import torch.distributed as dist

from utils.runtime.distributed import is_dist
from utils.runtime.forward import ForwardSettings
from utils.runtime.io import atomic_write_leftovers, write_npz

if TYPE_CHECKING:
    from .session import EvaluationData
    from .settings import EvaluatedData

DEFAULT_SHARD_BATCHES = 8
BatchResult = TypeVar("BatchResult")
_SHARD = re.compile(r"shard_(\d{6})\.npz")
_FINGERPRINT, _ROWS, _CONTENT, _PACKED = "fingerprint", "rows", "content", "packed_"


def plan_shards(rows: Sequence[int], batch_size: int, shard_batches: int) -> list[list[int]]:
    """The rows of each shard: ``shard_batches`` batches of ``batch_size`` rows, in order."""
    size = batch_size * shard_batches
    return [list(rows[start:start + size]) for start in range(0, len(rows), size)]


def maps_key(position: int) -> str:
    """The name, in a shard, of the maps of the ``position``-th method."""
    return f"maps_{position}"


def rows_digest(rows: Sequence[Any]) -> str:
    """A short hash of a sequence of rows (or of (row, class) pairs), in order."""
    return hashlib.sha256(",".join(map(str, rows)).encode()).hexdigest()[:16]


def evaluation_fingerprint(data: EvaluationData, rows: Sequence[int], evaluated: EvaluatedData, shard_batches: int,
                           forward: ForwardSettings, use_gpu: bool) -> dict[str, Any]:
    """The entries of a fingerprint that both scripts share, by the flag (or quantity) that sets each: the model
    and its weights, the data and its preprocessing, the evaluated rows, the batches and the forward."""
    identity = data.identity()
    return {
        "model weights": identity["model"]["weights"],
        "model": f"{data.config['backbone']} pool {data.config['pool']} heads {data.config['heads']} classes "
                 f"{data.config['classes']}",
        "task": data.task.kind,
        "data list": f"{identity['data']['rows']} rows, hash {identity['data']['list']}",
        "--imsize": data.imsize, "--crop_pct": data.preprocessing["crop_pct"], "--squash": data.squash,
        "normalisation": {"mean": data.mean, "std": data.std},
        "evaluated rows (--fraction, --indexes)": f"{len(rows)} rows, hash {rows_digest(rows)}",
        "--seed": evaluated.subset.seed,
        "--batch_size": evaluated.batch_size, "--shard_batches": shard_batches,
        "--amp": forward.amp, "--channels_last": forward.channels_last, "--compile": forward.compile,
        "--use_gpu": use_gpu,
    }


def wait_for_every_rank() -> None:
    """A barrier of the process group (nothing in a single process)."""
    if is_dist():
        dist.barrier()


def fingerprint_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``what SAVED (now CURRENT)`` for every entry of two fingerprints that differs."""
    return [f"{key} {_text(saved.get(key))} (now {_text(current.get(key))})"
            for key in dict.fromkeys([*saved, *current]) if saved.get(key) != current.get(key)]


def _text(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, list):
        return " ".join(map(str, value)) or "none"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def pack(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` (dicts, lists, numbers, text, numpy arrays, bytes) as JSON, its arrays and bytes moved to ``arrays``
    (no pickle: a shard is read with ``allow_pickle=False``)."""
    if isinstance(value, dict):
        return {key: pack(item, arrays) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [pack(item, arrays) for item in value]
    if isinstance(value, (np.ndarray, bytes)):
        key = f"{_PACKED}{len(arrays)}"
        arrays[key] = np.frombuffer(value, dtype=np.uint8) if isinstance(value, bytes) else value
        return {"__bytes__" if isinstance(value, bytes) else "__array__": key}
    return value


def unpack(value: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """The inverse of :func:`pack`."""
    if isinstance(value, dict):
        if "__array__" in value:
            return arrays[value["__array__"]]
        if "__bytes__" in value:
            return arrays[value["__bytes__"]].tobytes()
        return {key: unpack(item, arrays) for key, item in value.items()}
    if isinstance(value, list):
        return [unpack(item, arrays) for item in value]
    return value


class ShardStore:
    """The committed shards of one evaluation (``path``: ``EvaluationFolder.shards(script)``): the ``plan`` (the
    rows of each shard, :func:`plan_shards`) and the ``fingerprint`` of the evaluation (a flat mapping, flag or
    quantity -> value, JSON-able), which every shard records and a resumed run must match."""

    def __init__(self, path: Path, plan: Sequence[Sequence[int]], fingerprint: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.plan = [list(rows) for rows in plan]
        self.fingerprint = json.loads(json.dumps(dict(fingerprint)))

    def __len__(self) -> int:
        return len(self.plan)

    def file(self, k: int) -> Path:
        return self.path / f"shard_{k:06d}.npz"

    def _found(self) -> dict[int, Path]:
        if not self.path.is_dir():
            return {}
        found = {}
        for path in self.path.iterdir():
            match = _SHARD.fullmatch(path.name)
            if match and path.is_file():
                found[int(match.group(1))] = path
        return dict(sorted(found.items()))

    def by_shard(self, shards: Sequence[int], batch_size: int,
                 compute: Callable[[list[int]], Iterator[BatchResult]]) -> Iterator[tuple[int, list[BatchResult]]]:
        """One pass of ``compute`` (one result per batch of ``batch_size`` rows) over the rows of ``shards``, its
        results grouped by shard: (k, the results of shard k's batches)."""
        results = compute([row for k in shards for row in self.plan[k]])
        for k in shards:
            yield k, [next(results) for _ in range(math.ceil(len(self.plan[k]) / batch_size))]
        next(results, None)  # ends the pass, so that its progress counts the last batch

    def committed(self) -> list[int]:
        """The committed shards, each checked: readable, made by this evaluation, of the planned rows (else one
        line naming the file)."""
        found = self._found()
        for k, path in found.items():
            saved, rows = self._read(path, lambda data: (json.loads(str(data[_FINGERPRINT])), data[_ROWS].tolist()))
            differences = fingerprint_differences(saved, self.fingerprint)
            if differences:
                raise ValueError(f"--resume: {path} was committed by another evaluation ({'; '.join(differences)}); "
                                 f"rerun with the flags it was made with, or leave out --resume to start afresh")
            if k >= len(self.plan) or rows != self.plan[k]:
                raise ValueError(f"--resume: {path} holds other rows than shard {k} of this evaluation (a file not "
                                 f"written by it?); delete it and rerun with --resume to recompute that shard")
        return list(found)

    def pending(self, resume: bool, rank: int) -> list[int]:
        """The shards still to compute, the same on every rank (called before the process group's rendezvous, so
        before any shard is written). ``resume``: those not committed; else all, rank 0 removing an unfinished
        run's shards (one note)."""
        if resume:
            self._remove_temporaries(rank)
            done = set(self.committed())
            if done and rank == 0:
                print(f"resuming: {len(done)} of {len(self.plan)} shards committed in {self.path}", flush=True)
            return [k for k in range(len(self.plan)) if k not in done]
        if rank == 0:
            stale = self._found()
            if stale:
                print(f"note: removed {len(stale)} shards of an unfinished evaluation in {self.path} (pass --resume "
                      f"to continue one)", file=sys.stderr, flush=True)
            self.remove()
        return list(range(len(self.plan)))

    def _remove_temporaries(self, rank: int) -> None:
        if rank == 0:
            for path in atomic_write_leftovers(self.path):
                path.unlink(missing_ok=True)

    def commit(self, k: int, content: Any, arrays: Mapping[str, np.ndarray]) -> Path:
        """Writes shard ``k`` (atomically): ``content`` (see :func:`pack`) and named ``arrays``."""
        packed: dict[str, np.ndarray] = {}
        text = json.dumps(pack(content, packed))
        return write_npz(self.file(k), {_FINGERPRINT: np.asarray(json.dumps(self.fingerprint)),
                                        _ROWS: np.asarray(self.plan[k], dtype=np.int64),
                                        _CONTENT: np.asarray(text), **packed, **arrays})

    def content(self, k: int) -> Any:
        """Shard ``k``'s content, as committed."""
        return self._read(self.file(k), lambda data: unpack(
            json.loads(str(data[_CONTENT])), {name: data[name] for name in data.files if name.startswith(_PACKED)}))

    def array(self, k: int, name: str) -> np.ndarray:
        """One named array of shard ``k``."""
        return self._read(self.file(k), lambda data: data[name])

    def arrays(self, name: str) -> Iterator[np.ndarray]:
        """The array ``name`` of every shard, in order (one shard's at a time)."""
        for k in range(len(self.plan)):
            yield self.array(k, name)

    def _read(self, path: Path, read: Callable[[np.lib.npyio.NpzFile], Any]) -> Any:
        """``read`` of shard file ``path``; a missing file, or one that cannot be read, is one line naming it."""
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: a shard committed by another rank must be visible here (put "
                                    f"--store_dir on a file system every rank shares)")
        try:
            with np.load(path, allow_pickle=False) as data:
                return read(data)
        except (KeyError, ValueError, OSError, zipfile.BadZipFile) as error:
            raise self._unreadable(path, error) from None

    @staticmethod
    def _unreadable(path: Path, error: BaseException) -> ValueError:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return ValueError(f"{path} is not a readable shard ({reason}); delete it and rerun with --resume to "
                          f"recompute it")

    def remove(self) -> None:
        """Deletes the shards (and the folder, and ``shards/`` when nothing else is left there)."""
        if self.path.is_dir():
            shutil.rmtree(self.path)
        parent = self.path.parent
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
