"""ForwardSettings: chunked workloads, and --compile through the three scripts (slow: compiling takes minutes on a
CPU) with the results of eager runs."""
import json

import pytest
import torch

import main_INets
import objrecon_imagenet
import recognition_imagenet
import utils.runtime.forward
from tests.helpers import read_maps
from utils.explain import create_saliency
from utils.runtime.forward import ForwardSettings, cpu_has_native_bf16, warn_emulated_bf16
from utils.runtime.layout import RunFolder


def test_chunked_runs_every_row_once_in_order():
    calls = []

    def run(start, stop):
        calls.append((start, stop))
        return torch.arange(start, stop)

    out = ForwardSettings(chunk=4).chunked(10, run, torch.device("cpu"))
    assert out.tolist() == list(range(10)) and out.dtype == torch.float32
    assert calls == [(0, 4), (4, 8), (8, 10)]
    assert ForwardSettings(chunk=4).chunked(0, run, torch.device("cpu")).numel() == 0


@pytest.mark.parametrize("native", [False, True])
def test_bf16_autocast_on_a_cpu_that_emulates_it_warns_once(monkeypatch, capsys, native):
    """Measured on an AVX2 EPYC without bfloat16 kernels: --amp bf16 made EfficientNet-Lite0 11x slower."""
    assert isinstance(cpu_has_native_bf16(), bool)
    monkeypatch.setattr(utils.runtime.forward, "cpu_has_native_bf16", lambda: native)
    warn_emulated_bf16.cache_clear()
    conv = torch.nn.Conv2d(3, 4, 3)
    for _ in range(2):
        with ForwardSettings(amp="bf16").autocast(torch.device("cpu")):
            assert conv(torch.randn(1, 3, 8, 8)).dtype == torch.bfloat16
    with ForwardSettings().autocast(torch.device("cpu")):
        conv(torch.randn(1, 3, 8, 8))
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == (0 if native else 1)
    assert native or ("--amp bf16" in warnings[0] and "leave --amp out" in warnings[0])
    warn_emulated_bf16.cache_clear()


def test_chunked_splits_a_chunk_that_runs_out_of_memory():
    sizes = []

    def run(start, stop):
        if stop - start > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        sizes.append(stop - start)
        return torch.arange(start, stop)

    assert ForwardSettings(chunk=100).chunked(10, run, torch.device("cpu")).tolist() == list(range(10))
    assert max(sizes) <= 3 and sum(sizes) == 10


@pytest.mark.slow
def test_compiled_gradient_head_equals_eager():
    from models import create_model

    torch.manual_seed(0)
    model = create_model("resnet18", pool="ca", num_classes=10, channels=(8, 16, 32, 64), stem_width=8).eval()
    x = torch.randn(3, 3, 64, 64)
    targets = torch.tensor([1, 2, 3])
    for name in ("gradcam", "gradcam++"):
        eager = create_saliency(name, model)(x, targets)
        compiled = create_saliency(name, model, forward=ForwardSettings(compile=True))
        assert (compiled(x, targets) - eager).abs().max() < 1e-5, name


@pytest.mark.slow
def test_the_three_scripts_with_compile_give_the_eager_results(small_builtin, builtin_flags, tmp_path):
    """main_INets.py, recognition_imagenet.py and objrecon_imagenet.py with --compile: the same training log,
    maps and metrics as without, to rounding."""
    results = {}
    for label, extra in (("eager", []), ("compiled", ["--compile"])):
        run = tmp_path / label / "run"
        main_INets.main([*builtin_flags, "--imsize", "32", "--epochs", "1", "--workers", "0", "--batch_size", "32",
                         "--no-pretrained", "--model", "resnet18", "--store_dir", str(run), *extra])
        evaluation = tmp_path / label / "eval"
        data = ["--root_data", str(small_builtin / "images"), "--path_lbl", str(small_builtin / "val.csv"),
                "--workers", "0", "--batch_size", "16", "--fraction", "0.5"]
        recognition_imagenet.main(["--state_root", str(run), "--store_dir", str(evaluation), "--method", "gradcam",
                                   "scorecam", "--n_overlays", "0", *data, *extra])
        objrecon_imagenet.main(["--state_root", str(run), "--store_dir", str(evaluation), *data, *extra])
        results[label] = {"log": RunFolder(run).read_log(1),
                          "maps": {m: read_maps(evaluation, m)["maps"] for m in ("gradcam", "scorecam")},
                          "summary": json.loads((evaluation / "summary.json").read_text())["results"]}
    eager, compiled = results["eager"], results["compiled"]
    assert abs(float(eager["log"][0]["train_loss"]) - float(compiled["log"][0]["train_loss"])) < 1e-3
    for method in ("gradcam", "scorecam"):
        assert abs(eager["maps"][method] - compiled["maps"][method]).max() < 1e-3, method
        for key, value in eager["summary"][method].items():
            if isinstance(value, float):
                assert abs(value - compiled["summary"][method][key]) < 1e-2, (method, key)
