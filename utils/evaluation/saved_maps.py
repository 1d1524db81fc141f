"""Where each method's maps come from for scoring: a saliency file of recognition_imagenet.py, checked against the
model and data being evaluated, or computed on the fly; and which rows and classes that leaves. A file holds one map
per (dataset row, class) pair: one per image for a single-label model, one per explained class for a multi-label
one."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from utils.faithfulness import CLASS_SOURCES, get_protocol
from utils.runtime.layout import EvaluationFolder

from .identity import identity_mismatch
from .methods import method_names
from .pairs import Pair
from .rows import evaluated_indices
from .session import EvaluationData
from .settings import DEFAULT_METHOD, DataSubset, PathLike

_CHECK_CHUNK = 1024  # maps checked for NaN or inf at a time


@dataclasses.dataclass
class Source:
    """One method's maps: read from a file (``maps`` + the position of each (dataset row, class) pair) or
    computed."""

    method: str
    path: Optional[Path] = None
    maps: Optional[torch.Tensor] = None
    pairs: Optional[dict[Pair, int]] = None
    class_source: Optional[str] = None
    identity: Optional[dict] = None                        # the model and data that made a file's maps
    saliency: Any = None                                   # a SaliencyMethod when computed

    @property
    def from_file(self) -> bool:
        return self.path is not None

    def card(self) -> dict:
        if self.from_file:
            return {"source": "file", "file": str(self.path), "method": self.method, "class_source": self.class_source,
                    "map_size": list(self.maps.shape[1:]), "num_maps": int(self.maps.shape[0])}
        return {"source": "computed", **self.saliency.describe()}

    def classes(self) -> dict[int, list[int]]:
        """The classes explained in each dataset row of the file, ascending."""
        classes: dict[int, list[int]] = {}
        for row, label in sorted(self.pairs):
            classes.setdefault(row, []).append(label)
        return classes

    def batch_maps(self, pairs: Sequence[Pair]) -> torch.Tensor:
        return self.maps[[self.pairs[pair] for pair in pairs]]


def read_source(method: str, path: Path) -> Source:
    loaded = EvaluationFolder.load_maps(path)
    maps, indices, targets = loaded["maps"], loaded["indices"], loaded["targets"]
    if len(targets) != len(indices):
        raise ValueError(f"{path}: {len(maps)} maps and {len(indices)} dataset rows but {len(targets)} targets")
    bad = _non_finite_maps(maps)
    if bad:
        row = bad[0]
        raise ValueError(f"{path}: {len(bad)} map(s) contain NaN or inf (first: file row {row}, dataset row "
                         f"{indices[row]}); regenerate them")
    pairs = {(int(index), int(label)): position for position, (index, label) in enumerate(zip(indices, targets))}
    if len(pairs) != len(indices):
        raise ValueError(f"{path}: a (dataset row, class) pair appears twice in its indices and targets")
    return Source(method=loaded["method"] or method, path=path, maps=maps, pairs=pairs,
                  class_source=loaded["class_source"], identity=loaded["identity"])


def _non_finite_maps(maps: torch.Tensor) -> list[int]:
    """The positions of the maps holding NaN or inf, checked a chunk at a time: a file's maps are memory-mapped
    where they can be, and need not fit in memory."""
    bad: list[int] = []
    for start in range(0, len(maps), _CHECK_CHUNK):
        finite = torch.isfinite(maps[start:start + _CHECK_CHUNK].flatten(1)).all(1)
        bad.extend(start + int(position) for position in (~finite).nonzero().flatten())
    return bad


def resolve_sources(store: EvaluationFolder, saliency_dir: Optional[PathLike], methods: Optional[Sequence[str]],
                    compute: bool) -> list[Source]:
    """One :class:`Source` per method: saved files of ``saliency_dir`` (else of ``store``) where present (unless
    ``compute``), else computed; ``methods`` None: every saved file (``compute``: the default method)."""
    explicit_dir = saliency_dir is not None
    folder = EvaluationFolder(saliency_dir) if explicit_dir else store
    if methods is None and not compute:
        found = folder.saved_maps()
        if not found:
            raise FileNotFoundError(
                f"no saliency maps in {folder.path} (looked for {folder.maps('<method>').name}): run "
                f"recognition_imagenet.py --salient --store_dir {folder.path} first, or give --method "
                f"{DEFAULT_METHOD} [...] to compute them")
        return [read_source(folder.method_of(path), path) for path in found]
    sources = []
    for method in method_names(methods or [DEFAULT_METHOD]):
        path = folder.maps(method)
        if not compute and path.is_file():
            sources.append(read_source(method, path))
        elif not compute and explicit_dir:
            raise FileNotFoundError(
                f"saliency file not found: {path} (--saliency_dir {folder.path}); run recognition_imagenet.py "
                f"--salient --method {method} --store_dir {folder.path} first, or add --compute to compute the maps "
                f"here")
        else:
            sources.append(Source(method=method))
    return sources


def degenerate_maps_note(maps: torch.Tensor) -> Optional[str]:
    """A warning when maps carry no ranking: 1x1 maps, or maps whose pixels are all equal (scored as all-zero
    maps: every pixel ties, so insertion/deletion follow raster order and the masked image is black)."""
    if maps.shape[-2:] == (1, 1):
        return "its maps are 1x1: every pixel ties, so insertion/deletion follow raster order only"
    flat = maps.flatten(1)
    constant = int((flat.amax(1) == flat.amin(1)).sum())
    if constant:
        return (f"{constant} of {len(maps)} maps are constant (scored as all-zero maps: every pixel ties, so "
                "insertion/deletion follow raster order)")
    return None


def check_sources(sources: Sequence[Source], identity: dict) -> list[str]:
    """Refuses maps made by another model or for other data (one line naming the file and what differs); returns
    warnings for files that cannot be checked or whose maps carry no ranking."""
    notes = []
    for source in sources:
        if not source.from_file:
            continue
        if source.identity is None:
            notes.append(f"{source.path} records no model or data identity (an older version wrote it): not "
                         f"checked against --state_root")
        else:
            differences = identity_mismatch(source.identity, identity)
            if differences:
                raise ValueError(f"{source.path} was made by another model or for other data ({'; '.join(differences)})"
                                 f": regenerate it with recognition_imagenet.py --salient for this --state_root, or "
                                 f"evaluate in another --store_dir")
        degenerate = degenerate_maps_note(source.maps)
        if degenerate:
            notes.append(f"{source.path}: {degenerate}")
    return notes


def select_rows(subset: DataSubset, class_source: Optional[str], protocol: str, sources: Sequence[Source],
                data: EvaluationData) -> tuple[list[int], Optional[dict[int, list[int]]], str]:
    """The dataset rows to evaluate (ascending), the classes explained in each when fixed in advance (None:
    predicted on the fly) and the class source (``class_source``, else the saliency files', else ``protocol``'s).
    Rows: a saliency file's (else every row), restricted to the subset's indexes, then a seeded fraction of them,
    as recognition_imagenet.py picks them."""
    num_images, labels, task = len(data.dataset), data.dataset.targets, data.task
    indexes = subset.indexes
    files = [s for s in sources if s.from_file]
    if not files:
        class_source = class_source or get_protocol(protocol).class_source
        rows = subset.rows(num_images)
        return rows, ({i: task.true_classes(labels[i]) for i in rows} if class_source == "gt" else None), class_source
    first = files[0]
    classes = first.classes()
    for other in files[1:]:
        if set(other.classes()) != set(classes):
            raise ValueError(f"{other.path} has maps for {len(other.classes())} dataset rows and {first.path} for "
                             f"{len(classes)}, not the same rows: evaluate them separately")
        if other.class_source != first.class_source or set(other.pairs) != set(first.pairs):
            raise ValueError(f"{other.path} and {first.path} explain different classes")
    asked, class_source = class_source, first.class_source
    if asked is not None and asked != class_source:
        raise ValueError(f"the maps in {first.path} explain the {CLASS_SOURCES.get(class_source, class_source)} "
                         f"class, but --class_source {asked} was asked: regenerate them with the same "
                         f"class source, or add --compute")
    available = sorted(classes)
    if not available:
        raise ValueError(f"{first.path} holds no maps")
    outside = [index for index in available if not 0 <= index < num_images]
    if outside:
        raise ValueError(f"{first.path} has a map for dataset row {outside[0]}, but the dataset has {num_images} "
                         f"images: were the maps made with other --root_data/--path_lbl?")
    several = [index for index in available if len(classes[index]) > 1]
    if several and not task.multi_label:
        raise ValueError(f"{first.path} has {len(classes[several[0]])} maps for dataset row {several[0]}, but the "
                         f"model is single-label: one class per image")
    if indexes is not None:
        missing = sorted(set(indexes) - set(classes))
        if missing:
            raise ValueError(f"--indexes: {len(missing)} rows have no map in {first.path} (first: {missing[:5]})")
        available = indexes
    rows = evaluated_indices(len(available), subset.fraction, subset.seed)
    rows = [available[i] for i in rows]
    targets = {i: classes[i] for i in rows}
    if class_source == "gt":
        wrong = [i for i in rows if targets[i] != task.true_classes(labels[i])]
        if wrong:
            row = wrong[0]
            what = "class" if not task.multi_label else "classes"
            listed = task.true_classes(labels[row])
            raise ValueError(f"{first.path}: the ground-truth {what} of dataset row {row} "
                             f"{'is' if what == 'class' else 'are'} {_classes_text(listed)} in the list file but "
                             f"{_classes_text(targets[row])} in the maps file ({len(wrong)} rows differ): were the "
                             f"maps made with another --path_lbl?")
    return rows, targets, class_source


def _classes_text(classes: Sequence[int]) -> str:
    return str(classes[0]) if len(classes) == 1 else "[" + ", ".join(map(str, classes)) + "]"
