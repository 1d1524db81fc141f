"""File formats, written atomically (a temporary file in the same folder, then a rename) and read safely: JSON,
YAML, CSV, safetensors weights and training states loadable with ``weights_only=True``. Which file is which is
:mod:`utils.runtime.layout`'s business."""
from __future__ import annotations

import csv
import io
import json
import os
import pickle
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import yaml
from safetensors.torch import save as safetensors_bytes

PathLike = Union[str, Path]
_TEMPORARY_SUFFIX = ".tmp"
# mkstemp's names: prefix, 8 characters of [a-z0-9_], suffix
_TEMPORARY_NAME = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}" + re.escape(_TEMPORARY_SUFFIX))


def current_umask() -> int:
    """The process's umask, which the modes of files this project creates follow."""
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Writes through a temporary file in the same folder, then renames it over ``path``: a run killed
    mid-write leaves the previous file intact (and the temporary, see :func:`atomic_write_leftovers`). A write the
    file system refuses (read-only, full, no permission) raises an OSError of one line naming ``path``."""
    path = Path(path)
    kept = f"; the {path.name} there before, if any, is unchanged"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TEMPORARY_SUFFIX)
    except OSError as error:
        raise write_error(path, error, kept) from None
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        # mkstemp creates the file private (0600); give it the mode a plain open() would have
        os.chmod(tmp_name, 0o666 & ~current_umask())
        os.replace(tmp_name, path)
    except BaseException as error:
        Path(tmp_name).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise write_error(path, error, kept) from None
        raise
    return path


def write_error(path: PathLike, error: OSError, note: str = "") -> OSError:
    """``error`` (of the same class and errno: ENOSPC, EROFS, EACCES, ...) as one line naming the file written, and
    ``note``."""
    failure = type(error)(f"cannot write {path}: {error.strerror or error}{note}")
    failure.errno = error.errno
    return failure


def ensure_writable_dir(path: PathLike, flag: str) -> Path:
    """Creates ``path`` if needed and checks that files can be written there, before any work is done (one line
    naming ``flag`` otherwise)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise OSError(f"{flag} {path} is not a writable folder: {error.strerror or error}") from None
    return path


def atomic_write_leftovers(folder: PathLike) -> dict[Path, str]:
    """Temporaries that :func:`atomic_write` left in ``folder`` when its process was killed, with the name of
    the file each was meant to become."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    leftovers = {}
    for path in folder.iterdir():
        match = _TEMPORARY_NAME.fullmatch(path.name)
        if match and path.is_file():
            leftovers[path] = match.group("target")
    return leftovers


def atomic_write_text(path: PathLike, text: str) -> Path:
    return atomic_write(path, lambda file: file.write(text.encode()))


def save_json(path: PathLike, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def save_yaml(path: PathLike, data: Mapping) -> Path:
    return atomic_write_text(path, yaml.safe_dump(dict(data), sort_keys=False))


def write_csv(path: PathLike, rows: Sequence[Mapping[str, Any]], fields: Optional[Sequence[str]] = None) -> Path:
    fields = list(fields or dict.fromkeys(k for row in rows for k in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, text.getvalue())


def read_csv(path: PathLike) -> list[dict]:
    with Path(path).open(newline="") as file:
        return list(csv.DictReader(file))


@dataclass(frozen=True)
class StreamedArray:
    """An array that :func:`write_npz` writes chunk by chunk along its first axis, never holding it whole: its
    ``dtype``, its full ``shape`` and the ``chunks`` (arrays of that dtype and trailing shape, in order)."""

    dtype: np.dtype
    shape: tuple[int, ...]
    chunks: Iterable[np.ndarray]


# a fixed member time (zip's earliest) instead of the clock's: the same arrays give the same bytes
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def write_npz(path: PathLike, arrays: Mapping[str, Union[np.ndarray, StreamedArray]]) -> Path:
    """An uncompressed ``.npz`` that ``np.load(allow_pickle=False)`` reads (as ``np.savez`` writes), byte for byte
    a function of the arrays; a :class:`StreamedArray` member is written as its chunks arrive."""
    def write(file) -> None:
        with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, array in arrays.items():
                with archive.open(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME), "w",
                                  force_zip64=True) as member:
                    if not isinstance(array, StreamedArray):
                        np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
                        continue
                    dtype = np.dtype(array.dtype)
                    np.lib.format.write_array_header_1_0(member, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                                  "fortran_order": False,
                                                                  "shape": tuple(array.shape)})
                    rows = 0
                    for chunk in array.chunks:
                        chunk = np.ascontiguousarray(chunk, dtype=dtype)
                        if chunk.shape[1:] != tuple(array.shape[1:]):
                            raise ValueError(f"{path}: a chunk of {name} has shape {chunk.shape}, not (n, "
                                             f"{', '.join(map(str, array.shape[1:]))})")
                        member.write(chunk.tobytes())
                        rows += len(chunk)
                    if rows != array.shape[0]:
                        raise ValueError(f"{path}: {name} got {rows} rows, {array.shape[0]} announced")
    return atomic_write(path, write)


def save_weights(path: PathLike, state_dict: Mapping[str, torch.Tensor], metadata: Optional[dict] = None) -> Path:
    """Weights as safetensors (contiguous CPU copies; shared storage is not allowed there)."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    data = safetensors_bytes(tensors, metadata=meta)
    return atomic_write(path, lambda file: file.write(data))


def save_training_state(path: PathLike, state: Mapping[str, Any]) -> Path:
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    return atomic_write(path, lambda file: file.write(buffer.getvalue()))


def load_training_state(path: PathLike) -> dict:
    """A training state written by ``save_training_state``; never unpickles code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"training state not found: {path}") from None
    except Exception as error:
        raise unreadable_file(path, "training state", error) from None


def unreadable_file(path: PathLike, what: str, error: BaseException) -> ValueError:
    """One line for a weights file or training state that ``torch.load`` (``weights_only=True``) or safetensors
    cannot read: the file and why, never PyTorch's advice to load it with ``weights_only=False`` (which would run
    whatever code the file holds)."""
    path = Path(path)
    if isinstance(error, pickle.UnpicklingError) and "weights_only" in str(error):
        return ValueError(f"cannot read {what} {path}: it is corrupt, or holds Python objects besides tensors "
                          "(not unpickled here: that could run code)")
    if path.is_file() and path.stat().st_size == 0:
        reason = "the file is empty"
    else:  # the first sentence of the reason: PyTorch goes on to guess at causes ("If you are seeing this error...")
        reason = re.split(r"(?<=[a-z)])\. ", str(error).strip().split("\n")[0])[0] or type(error).__name__
    return ValueError(f"cannot read {what} {path}: the file is corrupt or truncated ({reason})")
