"""What both evaluation pipelines start from: the device check, the trained model, the evaluated dataset with its
preprocessing, the forward settings, and the pass over a shard of rows in batches."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence, Union

import torch
from torch.utils.data import DataLoader, Subset

from models.classifier import CAStreamClassifier
from utils.data import DataSource, ImageDataset, Preprocessing, build_dataset, default_kind, kind_task
from utils.runtime.distributed import detect_environment
from utils.runtime.forward import ForwardSettings
from utils.runtime.lock import FolderLock
from utils.runtime.progress import counter
from utils.task import Task, create_task

from .identity import evaluation_identity, preprocessing_card
from .model import default_store_dir, load_trained_model
from .settings import EvaluatedData, EvaluationSettings, RecognitionSettings, Saliency, TrainedModel

DEFAULT_IMSIZE = 224


def store_dir_lock(settings: Union[RecognitionSettings, EvaluationSettings]) -> FolderLock:
    """The lock of an evaluation's ``--store_dir`` (a ``with`` block holds it): a second run into the folder fails
    with one line naming the holder, and a folder the run created is removed again if the run fails before writing
    anything into it. Under torchrun / SLURM rank 0 takes it (the other ranks write nothing)."""
    trained = settings.model
    folder = settings.store_dir or default_store_dir(trained.state_root, trained.choice.name)
    return FolderLock(folder, "--store_dir", enabled=detect_environment().is_main)


@dataclass
class EvaluationData:
    """The model an evaluation scores and the dataset it scores it on, with the preprocessing that joins them."""

    model: CAStreamClassifier
    config: dict
    dataset: ImageDataset
    imsize: int
    crop_pct: float
    squash: bool
    task: Task = Task()
    _identity: Optional[dict] = field(default=None, repr=False)

    @property
    def mean(self) -> list[float]:
        return list(self.config["mean"])

    @property
    def std(self) -> list[float]:
        return list(self.config["std"])

    @property
    def class_names(self) -> Optional[list[str]]:
        return self.config.get("class_names") or self.dataset.classes

    @property
    def preprocessing(self) -> dict:
        return preprocessing_card(self.imsize, self.crop_pct, self.squash, self.mean, self.std)

    def identity(self) -> dict:
        """The model / data identity stored with and checked against saliency files (hashes the weights once)."""
        if self._identity is None:
            self._identity = evaluation_identity(self.model, self.config, self.dataset.samples, self.preprocessing)
        return self._identity


def load_evaluation(trained: TrainedModel, evaluated: EvaluatedData, saliency: Saliency) -> EvaluationData:
    """The model of ``trained`` (its choices override its run's config) and the dataset of ``evaluated``,
    preprocessed as the model's run was (``evaluated``'s size and geometry override). The task (single- or
    multi-label, its predicted classes by ``saliency``) is the run's, which ``evaluated.kind`` must agree with;
    without a run's config it follows ``evaluated.kind``."""
    choice = trained.choice
    model, config = load_trained_model(trained.state_root, choice.name, choice.pool, choice.classes, choice.heads,
                                       bool(choice.pretrained))
    recorded = config.get("task")
    kind = evaluated.kind or default_kind(recorded)
    task = kind_task(kind)
    if recorded is not None and recorded != task:
        raise ValueError(f"--dataset {kind} is {task} data, but the model of {trained.state_root} was trained on "
                         f"{recorded} data (its config.json)")
    config["task"] = task
    imsize = evaluated.imsize or config.get("imsize") or DEFAULT_IMSIZE
    preprocessing = Preprocessing(imsize, evaluated.crop_pct, evaluated.squash, config["mean"], config["std"])
    dataset = build_dataset(DataSource(kind, evaluated.root, evaluated.listing), preprocessing, train=False,
                            num_classes=config["classes"])
    return EvaluationData(model, config, dataset, imsize, evaluated.crop_pct, evaluated.squash,
                          create_task(task, saliency.pred_threshold, saliency.pred_topk))


def batches(dataset, rows: Sequence[int], batch_size: int, workers: int, forward: ForwardSettings,
            device: torch.device, desc: str, progress: bool) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """(dataset rows, images on ``device`` in the forward's layout, labels) for every batch of ``rows``, in order;
    the progress bar (plain lines in a log file) counts images."""
    loader = DataLoader(Subset(dataset, list(rows)), batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda")
    start = 0
    with counter(len(rows), progress, desc, "img") as bar:
        for images, labels in loader:
            batch_rows = list(rows[start:start + len(labels)])
            start += len(labels)
            yield batch_rows, forward.prepare(images, device), labels
            bar.update(len(batch_rows))
