"""Extension from outside the package: a saliency method and a backbone family defined in this file (or in a plugin
file the CLI imports) are registered and run through the evaluation scripts and ``create_model``.

The evaluations run a copy of ``tests/fixtures/run_v1`` (timm's 0.1M-parameter ``test_efficientnet`` with a CA
stream, trained on the built-in dataset) on the small built-in dataset at 96 px (3x3 maps).
"""
import re
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Optional

import pytest
import timm
import torch
from timm.models.regnet import RegNet

import models.families
import objrecon_imagenet
import recognition_imagenet
import utils.explain.registry
from models import BackboneFamily, create_model, family_of, register_family, supported_backbones
from tests.helpers import read_maps
from utils.data import DataSource, Preprocessing, build_dataset
from utils.evaluation.model import load_trained_model
from utils.explain import BatchContext, SaliencyMethod, create_saliency, method_spec, normalize_maps, register_method
from utils.runtime.io import read_csv

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "run_v1"
IMSIZE = 96


class ChannelMax(SaliencyMethod):
    """A toy method: the channel maximum of the last feature map (class-agnostic). In an evaluation it reads the
    classification forward's feature maps instead of running the backbone again, and records that it did."""

    engine = "toy"
    reused: list[bool] = []

    def compute(self, images: torch.Tensor, targets: Optional[torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            return self.model.forward_features(images).float().amax(dim=1)

    def explain_batch(self, images: torch.Tensor, targets: Optional[torch.Tensor] = None,
                      context: Optional[BatchContext] = None) -> torch.Tensor:
        feature_maps = None if context is None else context.feature_maps
        ChannelMax.reused.append(feature_maps is not None)
        if feature_maps is None:
            return self(images, targets)
        return normalize_maps(feature_maps[-1].float().amax(dim=1))


PLUGIN = '''"""A plugin file: the CLI imports it (--plugin), its registration applies to the run."""
import torch

from utils.explain import SaliencyMethod, register_method


class ChannelMin(SaliencyMethod):
    engine = "plugin"

    def compute(self, images, targets):
        with torch.no_grad():
            return -self.model.forward_features(images).float().amin(dim=1)


register_method("toy_min", ChannelMin)
'''


@pytest.fixture
def registry(monkeypatch):
    """The method registry as it is, restored after the test (and the plugin modules it imported forgotten)."""
    monkeypatch.setattr(utils.explain.registry, "_METHODS", dict(utils.explain.registry._METHODS))
    monkeypatch.setattr(utils.explain.registry, "_ALIASES", dict(utils.explain.registry._ALIASES))
    modules = set(sys.modules)
    yield
    for name in set(sys.modules) - modules:
        if name.startswith("toy_plugin"):
            del sys.modules[name]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("extension") / "run"
    shutil.copytree(FIXTURE, run)
    return run


def evaluation_flags(run: Path, data: Path, store: Path, fraction: float = 0.25) -> list[str]:
    """A quarter of the 48 validation images (objrecon takes ``fraction`` of a saliency file's rows)."""
    return ["--state_root", str(run), "--store_dir", str(store), "--root_data", str(data / "images"),
            "--path_lbl", str(data / "val.csv"), "--imsize", str(IMSIZE), "--batch_size", "8", "--workers", "0",
            "--fraction", str(fraction)]


def expected_maps(run: Path, data: Path, indices: list[int], reduce) -> torch.Tensor:
    """What the toy computes, from the model and the images directly."""
    model, config = load_trained_model(str(run))
    dataset = build_dataset(DataSource(root=data / "images", listing=data / "val.csv"),
                            Preprocessing(IMSIZE, mean=config["mean"], std=config["std"]), train=False)
    images = torch.stack([dataset[i][0] for i in indices])
    with torch.no_grad():
        return normalize_maps(reduce(model.forward_features(images).float()))


def test_a_method_registered_outside_the_package_runs_through_both_evaluation_scripts(registry, run_folder,
                                                                                      small_builtin, tmp_path):
    spec = register_method("toy_max", ChannelMax, reuses=("feature_maps",))
    assert spec.engines == ("own",) and method_spec("TOY_MAX") is spec
    ChannelMax.reused.clear()
    store = tmp_path / "eval"
    report = recognition_imagenet.main([*evaluation_flags(run_folder, small_builtin, store),
                                        "--method", "toy_max", "gradcam", "--engine", "package", "--n_overlays", "0"])
    saved = read_maps(store, "toy_max")
    assert saved["maps"].shape == (12, 3, 3) and saved["indices"] == sorted(saved["indices"])
    expected = expected_maps(run_folder, small_builtin, saved["indices"], lambda f: f.amax(dim=1))
    assert torch.allclose(saved["maps"], expected, atol=1e-5)
    assert report["saliency"]["methods"]["toy_max"]["engine"] == "toy"
    assert ChannelMax.reused and all(ChannelMax.reused)  # the classification forward's feature maps, every batch

    # objrecon reads the saved maps back and scores them; --compute runs the method again (no shared forward there)
    ChannelMax.reused.clear()
    summary = objrecon_imagenet.main([*evaluation_flags(run_folder, small_builtin, store, fraction=1.0),
                                      "--method", "toy_max", "--report_images", "0"])
    assert not ChannelMax.reused and summary["protocol"]["saliency"]["toy_max"]["source"] == "file"
    rows = read_csv(store / "metrics.csv")
    assert {row["method"] for row in rows} == {"toy_max"} and len(rows) == 12
    computed = tmp_path / "computed"
    objrecon_imagenet.main([*evaluation_flags(run_folder, small_builtin, computed), "--method", "toy_max",
                            "--compute", "--save_maps", "--report_images", "0"])
    assert ChannelMax.reused and not any(ChannelMax.reused)
    recomputed = read_maps(computed, "toy_max")
    assert recomputed["indices"] == saved["indices"]  # the same seeded quarter of the validation images
    assert torch.allclose(recomputed["maps"], expected, atol=1e-5)


def test_the_plugin_flag_imports_a_file_or_a_module_before_the_run(registry, run_folder, small_builtin, tmp_path,
                                                                   monkeypatch):
    plugin = tmp_path / "toy_plugin_file.py"
    plugin.write_text(PLUGIN)
    store = tmp_path / "file"
    recognition_imagenet.main([*evaluation_flags(run_folder, small_builtin, store), "--plugin", str(plugin),
                               "--method", "toy_min", "--n_overlays", "0"])
    saved = read_maps(store, "toy_min")
    expected = expected_maps(run_folder, small_builtin, saved["indices"], lambda f: -f.amin(dim=1))
    assert torch.allclose(saved["maps"], expected, atol=1e-5)
    # a second run in the same process keeps the first import (a second one would register the name twice)
    recognition_imagenet.main([*evaluation_flags(run_folder, small_builtin, tmp_path / "again"), "--plugin",
                               str(plugin), "--method", "toy_min", "--n_overlays", "0"])
    assert torch.equal(read_maps(tmp_path / "again", "toy_min")["maps"], saved["maps"])

    package = tmp_path / "toy_plugin_package"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "methods.py").write_text(PLUGIN.replace('"toy_min"', '"toy_min_module"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    summary = objrecon_imagenet.main([*evaluation_flags(run_folder, small_builtin, tmp_path / "module"),
                                      "--plugin", "toy_plugin_package.methods", "--method", "toy_min_module",
                                      "--report_images", "0"])
    assert set(summary["results"]) == {"toy_min_module"}


@pytest.mark.parametrize("plugin, message", [
    ("toy_plugin_missing", "--plugin toy_plugin_missing: No module named 'toy_plugin_missing'"),
    ("missing/toy_plugin.py", "--plugin missing/toy_plugin.py: no such file"),
])
def test_a_plugin_that_cannot_be_imported_is_one_line(registry, run_folder, small_builtin, tmp_path, plugin,
                                                      message):
    for script in (recognition_imagenet, objrecon_imagenet):
        with pytest.raises(SystemExit) as caught:
            script.main([*evaluation_flags(run_folder, small_builtin, tmp_path / "eval"), "--plugin", plugin])
        assert str(caught.value.code).startswith(f"error: {message}"), caught.value.code
    assert not (tmp_path / "eval").exists()


def test_a_plugin_that_registers_a_taken_name_is_one_line(registry, run_folder, small_builtin, tmp_path):
    plugin = tmp_path / "toy_plugin_taken.py"
    plugin.write_text(PLUGIN.replace('"toy_min"', '"gradcam"'))
    with pytest.raises(SystemExit) as caught:
        recognition_imagenet.main([*evaluation_flags(run_folder, small_builtin, tmp_path / "eval"),
                                   "--plugin", str(plugin)])
    assert caught.value.code == "error: saliency method 'gradcam': the name 'gradcam' is already registered " \
                                "(for 'gradcam')"


def test_registration_errors_are_one_clear_line(registry):
    with pytest.raises(ValueError, match="the name 'gradcampp' is already registered \\(for 'gradcam\\+\\+'\\)"):
        register_method("toy", ChannelMax, aliases=("GradCAMpp",))
    with pytest.raises(ValueError, match="use lower-case letters"):
        register_method("Toy Max", ChannelMax)
    with pytest.raises(ValueError, match="reuses logits; expected some of feature_maps, attentions"):
        register_method("toy", ChannelMax, reuses=("logits",))
    with pytest.raises(ValueError, match="this project's own method: pytorch-grad-cam has no equivalent"):
        register_method("toy", ChannelMax)
        create_saliency("toy", create_model("resnet18", num_classes=3), engine="package")


@pytest.fixture
def families(monkeypatch):
    """The backbone family table as it is, restored after the test."""
    monkeypatch.setattr(models.families, "_FAMILIES", dict(models.families._FAMILIES))


def zero_linears(stream: torch.nn.Module) -> None:
    for module in stream.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.zeros_(module.weight)


def test_a_backbone_family_registered_outside_the_package(families):
    """RegNet has no family: its stream taps every feature_info stage (the generic rule) until one is registered."""
    generic = create_model("regnetx_002", pool="ca", num_classes=3)
    assert family_of(generic.backbone).name == "generic" and generic.taps == ["stem", "s1", "s2", "s3"]
    assert "regnetx_002" not in supported_backbones()

    regnet = register_family(BackboneFamily(
        name="regnet", model_class=RegNet, stream_taps=lambda backbone: ["s2", "s3"],
        cam_target_layer=lambda backbone: backbone.s4, init_stream=zero_linears, architectures=("regnetx_002",)))
    model = create_model("regnetx_002", pool="ca", num_classes=3).eval()
    assert family_of(model.backbone) is regnet and model.taps == ["s2", "s3"]
    assert model.cam_target_layer is model.backbone.s4 and "regnetx_002" in supported_backbones()
    assert all(not block.proj.weight.any() for block in model.stream.blocks)
    maps = create_saliency("gradcam", model, engine="package")(torch.randn(2, 3, 64, 64), [0, 1])
    assert maps.shape == (2, 2, 2)  # s4's grid at 64 px (stride 32)

    with pytest.raises(ValueError, match="backbone family of RegNet already registered \\('regnet'\\)"):
        register_family(regnet)
    with pytest.raises(ValueError, match="resnet18 already belong to a family"):
        register_family(BackboneFamily("mine", timm.models.vgg.VGG, lambda b: [], lambda b: b,
                                       architectures=("resnet18",)))


def test_the_recipes_of_docs_extending_run_as_written(registry, families):
    page = (REPO / "docs" / "extending.md").read_text()
    sections = re.split(r"^## ", page, flags=re.MULTILINE)
    recipes = "".join(s for s in sections if s.startswith(("Adding a saliency method", "Adding a backbone family")))
    blocks = re.findall(r"```python\n(.*?)```", recipes, flags=re.DOTALL)
    assert len(blocks) == 2
    for block in blocks:
        exec(textwrap.dedent(block), {})
    model = create_model("regnetx_002", pool="ca", num_classes=3).eval()
    assert model.taps == ["s2", "s3"] and model.cam_target_layer is model.backbone.s4
    x = torch.randn(2, 3, 64, 64)
    maps = create_saliency("activation", model)(x)
    with torch.no_grad():
        assert torch.equal(maps, normalize_maps(model.forward_features(x).mean(dim=1)))
