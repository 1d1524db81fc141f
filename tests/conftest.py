"""Shared fixtures: small built-in datasets and short training runs, written under pytest's temp folders."""
import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from filelock import FileLock

WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))  # pytest-xdist's (pyproject.toml: -n 2); 0 without
if WORKERS:
    # each worker gets its share of the cores, and so do its subprocesses: two workers of two OpenMP threads each on
    # two cores spun against each other (3.5x the CPU time of the suite, measured)
    WORKER_THREADS = max(1, (os.cpu_count() or 1) // WORKERS)
    os.environ["OMP_NUM_THREADS"] = str(WORKER_THREADS)
    torch.set_num_threads(WORKER_THREADS)
DEFAULT_THREADS = torch.get_num_threads()  # torch's choice (or the worker's share), before any module sets its own

SHARED_TRAININGS = ("trained_runs", "trained_voc_runs")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """In each module the tests of a shared training run last: a worker (``--dist loadfile`` sends it whole modules)
    then runs the module's other tests while another worker may still be training, instead of waiting for it."""
    module_order = {path: rank for rank, path in enumerate(dict.fromkeys(item.path for item in items))}
    items[:] = sorted(items, key=lambda item: (module_order[item.path],
                                               any(name in item.fixturenames for name in SHARED_TRAININGS)))


@pytest.fixture(scope="session", autouse=True)
def builtin_cache(tmp_path_factory):
    """Keeps the default built-in dataset of every test (and subprocess) out of the user's cache."""
    cache = tmp_path_factory.mktemp("castream_cache")
    previous = os.environ.get("CASTREAM_DATA")
    os.environ["CASTREAM_DATA"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("CASTREAM_DATA", None)
    else:
        os.environ["CASTREAM_DATA"] = previous


@pytest.fixture(scope="session")
def small_builtin(tmp_path_factory):
    """A small built-in dataset at 32x32: 20 training and 8 validation images per class."""
    from utils.data import ensure_builtin_dataset
    return ensure_builtin_dataset(tmp_path_factory.mktemp("data") / "builtin32", seed=0, imsize=32,
                                  train_per_class=20, val_per_class=8)


@pytest.fixture(scope="session")
def builtin_flags(small_builtin) -> list[str]:
    """main_INets.py data flags for ``small_builtin``."""
    return ["--root_data", str(small_builtin / "images"), "--path_list", str(small_builtin / "train.csv"),
            "--val_list", str(small_builtin / "val.csv")]


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` inside the block, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def all_threads() -> contextlib.AbstractContextManager[None]:
    """The shared trainings run on torch's default threads, whichever module (some run on one thread) asks for them
    first: the same weights for any test order, and no training slowed down by a small-model module's setting."""
    return torch_threads(DEFAULT_THREADS)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """For modules of small models (``pytestmark = pytest.mark.usefixtures("one_thread")``): on a shared 2-core
    machine two threads mostly synchronise, and cost several times one (up to 100x the arithmetic for the smallest).
    Module scope, so a module's shared evaluations run with it too and every comparison compares the same
    arithmetic."""
    with torch_threads(1):
        yield


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder that ``build`` fills, built once per test session: under pytest-xdist the first worker to ask builds
    it in the session's shared temporary folder while the others wait for it, then all of them read it."""
    if not WORKERS:
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    folder = tmp_path_factory.getbasetemp().parent / name
    built = folder / ".built"
    with FileLock(f"{folder}.lock"):
        if not built.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a build that failed in another worker
            folder.mkdir()
            build(folder)
            built.touch()
    return folder


def gap_then_ca(tmp_path_factory, name: str, flags: list[str], gap_epochs: int) -> Path:
    """The paper's protocol in small, built once per session (``built_once``): a GAP EfficientNet-Lite0 fine-tuned
    from its packaged ImageNet weights at 96x96 (3x3 feature maps) in ``gap/``, then the CA stream trained on it for
    two epochs with backbone and classifier frozen in ``ca/``."""
    import main_INets

    def train(runs: Path) -> None:
        common = [*flags, "--imsize", "96", "--workers", "0", "--batch_size", "32", "--seed", "0"]
        with all_threads():
            main_INets.main([*common, "--store_dir", str(runs / "gap"), "--epochs", str(gap_epochs)])
            main_INets.main([*common, "--store_dir", str(runs / "ca"), "--epochs", "2", "--pool", "ca", "--freeze",
                             "--init_from", str(runs / "gap"), "--lr", "3e-3"])

    return built_once(tmp_path_factory, name, train)


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory) -> dict:
    """``gap_then_ca`` on the built-in dataset, shared by the evaluation tests; GAP for one epoch (99.7% validation
    accuracy already; a second epoch cost about 30 s of the suite)."""
    from utils.data import ensure_builtin_dataset

    runs = gap_then_ca(tmp_path_factory, "runs", [], gap_epochs=1)
    return {"gap": runs / "gap", "ca": runs / "ca", "data": ensure_builtin_dataset()}


@pytest.fixture(scope="session")
def trained_voc_runs(tmp_path_factory) -> dict:
    """``gap_then_ca`` on multi-label data, shared by the multi-label tests: 40% of the built-in multi-label set's
    training images (``--dataset voc`` without data flags: the set is generated on first use), BCE with logits,
    validated on its 200 validation images; GAP for two epochs (a test checks that its loss decreases)."""
    from utils.data import ensure_builtin_voc

    runs = gap_then_ca(tmp_path_factory, "voc_runs", ["--dataset", "voc", "--fraction", "0.4"], gap_epochs=2)
    return {"gap": runs / "gap", "ca": runs / "ca", "data": ensure_builtin_voc()}
