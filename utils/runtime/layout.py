"""The layout of the folders the project writes: every file name, and every save and load of those files (the role
of timm's ``CheckpointSaver``). Writes are atomic (a temporary file, then a rename).

A run folder (``--store_dir`` of main_INets.py)::

    config.json                  how to rebuild the model and its preprocessing
    args.yaml                    the flags of the run
    log.csv                      one row per epoch (also in last.pth, and rebuilt from it at every start)
    last.pth                     the whole training state, loadable with weights_only=True: the commit point
    model.safetensors            the latest weights; model_best / model_ema.safetensors beside it
    checkpoint_epoch<N>.pth      the training state every --s_iterations epochs
    tensorboard/events.out.*     the scalars of log.csv
    .ca_stream.lock              while a run holds the folder (utils.runtime.lock; also in evaluation folders)

Any other file in a run folder is not the run's and is never removed.

An evaluation folder (``--store_dir`` of recognition_imagenet.py and objrecon_imagenet.py)::

    predictions.csv          recognition: one row per evaluated image
    classification.json      recognition: accuracies, subset, model, data (and the localisation scores)
    saliency_<method>.npz    recognition: the maps of one method (+ the model/data identity), rows aligned
    overlays.png             recognition: the first images with each method's map
    metrics.csv              objrecon: every metric per image and method
    summary.json             objrecon: the means, the mean curves and the protocol card
    curves_<name>.png        objrecon: insertion / deletion curves
    report.html              objrecon: the page to look at (tables, curves, a gallery of the images with each map)
    report_files/            objrecon: the gallery's thumbnails, <index>.jpg and <index>_<method>.jpg
    compare.html             several evaluations side by side (a folder of its own, or objrecon --compare's), with
                             curves_compare.png
    shards/<script>/         while a run is unfinished: its committed shards, shard_<k>.npz, from which --resume
                             continues and the files above are assembled; removed when they are written
"""
from __future__ import annotations

import json
import platform
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from .io import (
    StreamedArray,
    atomic_write,
    atomic_write_leftovers,
    atomic_write_text,
    load_training_state,
    read_csv,
    save_json,
    save_training_state,
    save_weights,
    save_yaml,
    write_csv,
    write_npz,
)

PathLike = Union[str, Path]


def library_versions() -> dict:
    """The versions every report records, so that numbers can be traced to the code that made them."""
    from importlib.metadata import PackageNotFoundError, version

    import timm
    import torchvision
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "torchvision": torchvision.__version__, "timm": timm.__version__}
    try:
        versions["grad-cam"] = version("grad-cam")
    except PackageNotFoundError:
        pass
    return versions


class RunFolder:
    """The files of one training run; ``path`` need not exist yet."""

    CONFIG = "config.json"
    ARGS = "args.yaml"
    LOG = "log.csv"
    STATE = "last.pth"
    WEIGHTS = "model.safetensors"
    BEST_WEIGHTS = "model_best.safetensors"
    EMA_WEIGHTS = "model_ema.safetensors"
    TENSORBOARD = "tensorboard"
    _NAMES = (CONFIG, ARGS, LOG, STATE, WEIGHTS, BEST_WEIGHTS, EMA_WEIGHTS)
    _CHECKPOINT = re.compile(r"checkpoint_epoch(\d+)\.pth")
    _EVENTS = "events.out.tfevents.*"

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # ---- names

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def args(self) -> Path:
        return self.path / self.ARGS

    @property
    def log(self) -> Path:
        return self.path / self.LOG

    @property
    def state(self) -> Path:
        return self.path / self.STATE

    @property
    def weights(self) -> Path:
        return self.path / self.WEIGHTS

    @property
    def best_weights(self) -> Path:
        return self.path / self.BEST_WEIGHTS

    @property
    def ema_weights(self) -> Path:
        return self.path / self.EMA_WEIGHTS

    @property
    def tensorboard(self) -> Path:
        return self.path / self.TENSORBOARD

    def checkpoint(self, epoch: int) -> Path:
        return self.path / f"checkpoint_epoch{epoch}.pth"

    @classmethod
    def is_run_file_name(cls, name: str) -> bool:
        return name in cls._NAMES or cls._CHECKPOINT.fullmatch(name) is not None

    def run_files(self) -> list[Path]:
        """The files of the folder that the run layout names, TensorBoard events included."""
        if not self.path.is_dir():
            return []
        files = [path for path in self.path.iterdir() if path.is_file() and self.is_run_file_name(path.name)]
        if self.tensorboard.is_dir():
            files += [path for path in self.tensorboard.glob(self._EVENTS) if path.is_file()]
        return sorted(files)

    def event_files(self) -> list[Path]:
        return sorted(self.tensorboard.glob(self._EVENTS))

    # ---- a folder that holds a run

    def check_not_a_run(self) -> None:
        """Refuses a folder that holds a run: writing into it would mix two runs' files."""
        found = self.run_files()
        if found:
            names = ", ".join(str(path.relative_to(self.path)) for path in found[:3])
            names += ", ..." if len(found) > 3 else ""
            raise ValueError(f"--store_dir {self.path} already holds a run ({names}); pass --resume to continue it "
                             f"or --overwrite to replace it")

    def remove_run_files(self) -> None:
        """Deletes the previous run's files (``--overwrite``), keeping anything the layout does not name."""
        for path in self.run_files():
            path.unlink()
        if self.tensorboard.is_dir() and not any(self.tensorboard.iterdir()):
            self.tensorboard.rmdir()

    def remove_stale_temporaries(self) -> None:
        """Deletes the temporaries that writes of a killed run left (none is ever renamed into place later)."""
        for path, target in atomic_write_leftovers(self.path).items():
            if self.is_run_file_name(target):
                path.unlink(missing_ok=True)

    # ---- saves and loads

    def read_config(self) -> dict:
        try:
            return json.loads(self.config.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.config} not found: --state_root must be a run folder of main_INets.py") \
                from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{self.config} is not valid JSON: {error}") from None

    def save_config(self, config: Mapping[str, Any]) -> Path:
        return save_json(self.config, config)

    def save_args(self, args: Mapping[str, Any]) -> Path:
        return save_yaml(self.args, args)

    def save_weights(self, path: Path, state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> Path:
        """One of the folder's weights files (:attr:`weights`, :attr:`best_weights`, :attr:`ema_weights`)."""
        return save_weights(path, state_dict, dict(metadata))

    def save_state(self, path: Path, state: Mapping[str, Any]) -> Path:
        """A training state: :attr:`state` (the commit point) or a :meth:`checkpoint`."""
        return save_training_state(path, state)

    @staticmethod
    def load_state(path: PathLike) -> dict:
        return load_training_state(path)

    def write_log(self, rows: Sequence[Mapping[str, Any]]) -> Path:
        return write_csv(self.log, rows)

    def read_log(self, last_epoch: int) -> list[dict]:
        """The rows of ``log.csv`` up to ``last_epoch``: the log of a training state saved without its rows."""
        return [row for row in read_csv(self.log) if int(row["epoch"]) <= last_epoch] if self.log.is_file() else []


class EvaluationFolder:
    """The files of one evaluation folder; ``path`` need not exist yet."""

    PREDICTIONS = "predictions.csv"
    CLASSIFICATION = "classification.json"
    MAPS_PREFIX, MAPS_SUFFIX = "saliency_", ".npz"
    OVERLAYS = "overlays.png"
    METRICS = "metrics.csv"
    SUMMARY = "summary.json"
    CURVES_PREFIX = "curves_"
    REPORT = "report.html"
    REPORT_FILES = "report_files"
    COMPARE = "compare.html"
    THUMBNAIL_SUFFIX = ".jpg"
    SHARDS = "shards"

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"EvaluationFolder({str(self.path)!r})"

    # ---- names

    @property
    def predictions(self) -> Path:
        return self.path / self.PREDICTIONS

    @property
    def classification(self) -> Path:
        return self.path / self.CLASSIFICATION

    @property
    def overlays(self) -> Path:
        return self.path / self.OVERLAYS

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def summary(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def report(self) -> Path:
        return self.path / self.REPORT

    @property
    def report_files(self) -> Path:
        return self.path / self.REPORT_FILES

    @property
    def compare(self) -> Path:
        return self.path / self.COMPARE

    def thumbnail(self, item: Union[int, str], method: Optional[str] = None) -> Path:
        """The gallery's thumbnail of ``item`` (a dataset row, or ``row-class`` for a multi-label pair): the image
        itself, or ``method``'s map over it."""
        name = str(item) if method is None else f"{item}_{file_stem(method)}"
        return self.report_files / f"{name}{self.THUMBNAIL_SUFFIX}"

    def shards(self, script: str) -> Path:
        """The folder of ``script``'s committed shards (``recognition``, ``objrecon``) while its run is unfinished."""
        return self.path / self.SHARDS / script

    def remove_stale_temporaries(self) -> None:
        """Deletes the temporaries that writes of a killed evaluation left beside its files and thumbnails."""
        for folder in (self.path, self.report_files):
            for path in atomic_write_leftovers(folder):
                path.unlink(missing_ok=True)

    def maps(self, method: str) -> Path:
        return self.path / f"{self.MAPS_PREFIX}{file_stem(method)}{self.MAPS_SUFFIX}"

    def curves(self, name: str) -> Path:
        return self.path / f"{self.CURVES_PREFIX}{file_stem(name)}.png"

    def saved_maps(self) -> list[Path]:
        return sorted(self.path.glob(f"{self.MAPS_PREFIX}*{self.MAPS_SUFFIX}"))

    @classmethod
    def method_of(cls, maps_file: Path) -> str:
        """The method named by a maps file's name (``+`` is spelled ``p`` there; the file itself records the name)."""
        return maps_file.name[len(cls.MAPS_PREFIX):-len(cls.MAPS_SUFFIX)]

    # ---- saves and loads

    def write_predictions(self, rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> Path:
        return write_csv(self.predictions, rows, fields)

    def write_metrics(self, rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> Path:
        return write_csv(self.metrics, rows, fields)

    def read_metrics(self) -> list[dict]:
        return read_csv(self.metrics)

    def write_thumbnails(self, thumbnails: Mapping[Path, bytes]) -> list[Path]:
        """The gallery's thumbnails (paths from :meth:`thumbnail`); the earlier run's other thumbnails are removed, so
        the folder holds this report's only."""
        written = [atomic_write(path, lambda file, data=data: file.write(data)) for path, data in thumbnails.items()]
        if self.report_files.is_dir():
            for path in self.report_files.glob(f"*{self.THUMBNAIL_SUFFIX}"):
                if path not in thumbnails:
                    path.unlink()
        return written

    def remove_report(self) -> None:
        """Deletes an earlier run's report.html and thumbnails (an evaluation without a report must not keep one
        about other numbers)."""
        self.report.unlink(missing_ok=True)
        self.write_thumbnails({})

    @staticmethod
    def write_page(path: PathLike, html: str) -> Path:
        """An HTML page (:attr:`report`, :attr:`compare`)."""
        return atomic_write_text(path, html)

    @staticmethod
    def write_report(path: PathLike, report: Mapping[str, Any]) -> Path:
        """A JSON report (classification.json, summary.json), with the library versions."""
        return save_json(path, {**report, "versions": library_versions()})

    def save_maps(self, method: str, maps: Union[torch.Tensor, StreamedArray], indices: Sequence[int],
                  targets: Sequence[int], class_source: str, identity: Optional[Mapping[str, Any]] = None) -> Path:
        """One file per method: maps (N, h, w) at their native resolution, row i for dataset row ``indices[i]``, with
        the identity of the model and data that made them. ``maps`` may arrive in chunks (a float32
        :class:`~utils.runtime.io.StreamedArray`), so that no more than a chunk is held."""
        if not isinstance(maps, StreamedArray):
            maps = maps.detach().float().cpu().numpy()
        return write_npz(self.maps(method), {
            "maps": maps, "indices": np.asarray(indices, dtype=np.int64),
            "targets": np.asarray(targets, dtype=np.int64), "method": np.asarray(method),
            "class_source": np.asarray(class_source),
            "identity": np.asarray(json.dumps(identity or {}))})

    @staticmethod
    def load_maps(path: PathLike) -> dict:
        """Reads a file written by :meth:`save_maps` (no pickled objects are allowed); ``identity`` is None for files
        of versions that did not record it."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"saliency file not found: {path} (run recognition_imagenet.py --salient first, "
                                    "or give --method to compute the maps)")
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{path} is not a saliency file (an .npz archive written by recognition_imagenet.py)")
        keys = ("maps", "indices", "targets", "method", "class_source")
        try:
            # allow_pickle=False: an array of Python objects is never unpickled (that could run code)
            with np.load(path, allow_pickle=False) as data:
                names = [*keys, "identity"] if "identity" in data.files else list(keys)
                loaded = {key: _array(data, key) for key in names if key != "maps"}
                loaded["maps"] = _mapped_member(path, "maps.npy")
                if loaded["maps"] is None:
                    loaded["maps"] = _array(data, "maps")
                pickled = next((key for key, array in loaded.items() if array is None), None)
                identity = json.loads(str(loaded["identity"])) if "identity" in loaded and not pickled else None
        except KeyError as error:
            raise ValueError(f"{path} is not a saliency file of recognition_imagenet.py: it has no {error} array") \
                from None
        except (ValueError, OSError, zipfile.BadZipFile) as error:
            raise ValueError(f"{path} is not a readable saliency file: {error}".splitlines()[0]) from None
        if pickled:
            raise ValueError(f"{path}: its {pickled} are of dtype object (pickled Python objects), which are never "
                             f"loaded: unpickling could run code; expected numbers")
        maps = loaded["maps"]
        for key, kinds, expected in (("maps", "f", "floating-point"), ("indices", "iu", "integer"),
                                     ("targets", "iu", "integer")):
            if loaded[key].dtype.kind not in kinds:
                raise ValueError(f"{path}: its {key} are of dtype {loaded[key].dtype}, expected {expected} numbers")
        if maps.ndim != 3 or len(maps) != len(loaded["indices"]):
            raise ValueError(f"{path}: expected maps (N, h, w) with one dataset index per map")
        if 0 in maps.shape[1:]:
            raise ValueError(f"{path}: its maps are empty ({maps.shape[1]}x{maps.shape[2]} pixels)")
        return {"maps": torch.from_numpy(maps), "indices": loaded["indices"].tolist(),
                "targets": loaded["targets"].tolist(), "method": str(loaded["method"]),
                "class_source": str(loaded["class_source"]), "identity": identity or None}

    @classmethod
    def read_summary(cls, path: PathLike, flag: str = "--compare") -> dict:
        """An objrecon summary, from its evaluation folder or the file itself (one line naming ``flag`` if not)."""
        path = Path(path)
        file = path / cls.SUMMARY if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"{flag}: {file} not found (give an objrecon_imagenet.py --store_dir or its "
                                    f"{cls.SUMMARY})")
        try:
            summary = json.loads(file.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{flag}: {file} is not valid JSON: {error}") from None
        if not isinstance(summary, dict) or not {"results", "curves", "protocol"} <= set(summary):
            raise ValueError(f"{flag}: {file} is not a summary of objrecon_imagenet.py")
        summary["path"] = str(file)
        return summary


def _mapped_member(path: Path, member: str) -> Optional[np.ndarray]:
    """The array of an uncompressed ``.npz`` member memory-mapped copy-on-write, so that scoring a saliency file of
    any size reads only the maps of the batch at hand; None where it cannot be mapped (a compressed or empty member,
    Python objects, Fortran order): then it is read whole."""
    with zipfile.ZipFile(path) as archive:
        try:
            info = archive.getinfo(member)
        except KeyError:
            return None
        if info.compress_type != zipfile.ZIP_STORED:
            return None
    with open(path, "rb") as file:
        file.seek(info.header_offset)
        local_header = file.read(30)  # the member's local header: its name and extra field lengths at bytes 26-29
        file.seek(info.header_offset + 30 + int.from_bytes(local_header[26:28], "little")
                  + int.from_bytes(local_header[28:30], "little"))
        version = np.lib.format.read_magic(file)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(file)
        offset = file.tell()
    if fortran_order or dtype.hasobject or 0 in shape:
        return None
    return np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=shape)


def _array(data: np.lib.npyio.NpzFile, key: str) -> Optional[np.ndarray]:
    """``data[key]``; None for an array of Python objects, which only unpickling could load."""
    try:
        return data[key]
    except ValueError as error:
        if "allow_pickle" not in str(error):
            raise
        return None


def file_stem(name: str) -> str:
    """A method or plot name as it appears in file names (``gradcam++`` -> ``gradcampp``)."""
    return name.replace("+", "p")
