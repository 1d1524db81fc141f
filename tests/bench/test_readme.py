"""The benchmark tables of docs/performance.md come from the benchmarks' JSON files: a benchmark that writes a file
a table quotes rewrites that table (and nothing else), a run writing elsewhere leaves the page alone."""
import json
from pathlib import Path

import pytest
import torch

from bench import bench_perchannel, readme

REPO = Path(__file__).resolve().parents[2]
OTHER_TEXT = "intro\n<!-- results:builtin -->\nkept\n<!-- /results:builtin -->\n"


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A README with every benchmark block empty and a results folder, in place of the repository's."""
    text = OTHER_TEXT + "".join(f"<!-- bench:{name} -->\n<!-- /bench:{name} -->\n" for name in readme.BLOCKS)
    (tmp_path / "README.md").write_text(text)
    (tmp_path / "results" / "gpu").mkdir(parents=True)
    monkeypatch.setattr(readme, "PAGE", tmp_path / "README.md")
    monkeypatch.setattr(readme, "RESULTS", tmp_path / "results")
    return tmp_path


def _block(text: str, name: str) -> str:
    return text.split(f"<!-- bench:{name} -->\n", 1)[1].split(f"<!-- /bench:{name} -->", 1)[0]


def test_a_benchmark_writes_its_table_into_the_readme(sandbox):
    threads = torch.get_num_threads()
    try:
        report = bench_perchannel.main(["--model", "resnet18", "--imsize", "32", "--methods", "fullgrad",
                                        "--fullgrad-images", "2", "--device", "cpu", "--threads", "1",
                                        "--out", str(sandbox / "results" / "perchannel.json")])
    finally:
        torch.set_num_threads(threads)
    text = (sandbox / "README.md").read_text()
    table = _block(text, "perchannel")
    row = next(line for line in table.splitlines() if line.startswith("| `fullgrad`"))
    speedups = report["fullgrad"]["speedup_vs_package"]
    assert f"(**{speedups['fast_fp32']:.2f}x**)" in row and f"(**{speedups['fast_bf16']:.2f}x**)" in row
    assert f"{report['fullgrad']['max_abs_diff_fp32_vs_package']:.1e}" in row
    assert "From `perchannel.json`." in table
    assert text.startswith(OTHER_TEXT)
    assert _block(text, "paper_table") == ""  # the other tables are left as they were


def test_the_package_on_fewer_images_is_compared_by_rate(sandbox):
    """--package-images: the slow package on the first images only, the fast paths on all, speedups per map."""
    threads = torch.get_num_threads()
    try:
        report = bench_perchannel.main(["--model", "resnet18", "--imsize", "32", "--methods", "fullgrad",
                                        "--fullgrad-images", "3", "--package-images", "1", "--device", "cpu",
                                        "--threads", "1", "--out", str(sandbox / "results" / "perchannel.json")])
    finally:
        torch.set_num_threads(threads)
    result = report["fullgrad"]
    assert result["images"] == 3 and result["package"]["images"] == 1
    package_rate = 1 / result["package"]["best_s"]
    for engine in ("fast_fp32", "fast_bf16"):
        assert result["speedup_vs_package"][engine] == round(3 / result[engine]["best_s"] / package_rate, 2)
    assert result["max_abs_diff_fp32_vs_package"] < 1e-4  # the first image's maps, the package's and ours
    row = next(line for line in _block((sandbox / "README.md").read_text(), "perchannel").splitlines()
               if line.startswith("| `fullgrad`"))
    assert "| 3 (package 1) |" in row


def test_a_run_written_elsewhere_leaves_the_readme_alone(sandbox):
    before = (sandbox / "README.md").read_text()
    bench_perchannel.main(["--model", "resnet18", "--imsize", "32", "--methods", "fullgrad", "--fullgrad-images", "1",
                           "--device", "cpu", "--threads", "1", "--out", str(sandbox / "trial.json")])
    assert (sandbox / "trial.json").is_file()
    assert (sandbox / "README.md").read_text() == before


def test_every_block_renders_the_committed_results(sandbox):
    """The repository's own result files (CPU and GPU) render into every table the README has."""
    readme.RESULTS = REPO / "bench" / "results"
    assert readme.refresh() == list(readme.BLOCKS)
    text = (sandbox / "README.md").read_text()
    for name, block in readme.BLOCKS.items():
        present = [file for file in block.files if (readme.RESULTS / file).is_file()]
        table = _block(text, name)
        if present:
            rows = [line for line in table.splitlines() if line.startswith("| ")]
            assert len(rows) >= 1 + len(present), (name, table)  # the header and at least a row per file
            assert "nan" not in table
        else:
            assert table.startswith(f"Not measured yet: `{block.command}`")
    gpu = json.loads((readme.RESULTS / "gpu" / "metrics_gpu.json").read_text())
    assert f"| {gpu['model']} {gpu['imsize']} px, {gpu['gpu']}, reference |" in _block(text, "metrics")


def test_unknown_block_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit):
        readme.main(["perchanel"])
    assert f"unknown block perchanel: expected one of {', '.join(readme.BLOCKS)}\n" in capsys.readouterr().err


def test_a_ratios_run_keeps_the_all_methods_figures(tmp_path):
    """bench_saliency without --all-methods rewrites its file but keeps the maps/s figures the README quotes."""
    from bench import bench_saliency

    out = tmp_path / "saliency.json"
    out.write_text(json.dumps({"all_methods": {"gradcam": {"maps_per_s": 1.0}}}))
    bench_saliency.main(["--model", "resnet18", "--imsize", "32", "--batch", "1", "--repeats", "1", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["all_methods"] == {"gradcam": {"maps_per_s": 1.0}} and "gap" in json.dumps(report)


@pytest.mark.parametrize("module, flags", [
    ("bench_training", ["--batch", "2", "--repeats", "1", "--classes", "4", "--configs", "gap_full", "ca_freeze"]),
    ("profile_gradient", ["--batch", "1", "--repeats", "1", "--calls", "1", "--no-compile"]),
])
def test_benchmarks_share_their_flags_and_machine_record(tmp_path, module, flags):
    """The flags of bench/common.py mean the same in every benchmark: --threads is applied, --out is where the report
    goes, and the report records the machine it ran on."""
    import importlib

    threads = torch.get_num_threads()
    try:
        importlib.import_module(f"bench.{module}").main(
            ["--model", "resnet18", "--imsize", "32", "--device", "cpu", "--threads", "1",
             "--out", str(tmp_path / "report.json"), *flags])
    finally:
        torch.set_num_threads(threads)
    report = json.loads((tmp_path / "report.json").read_text())
    setup = report.get("setup", report)
    assert setup["threads"] == 1 and setup["device"] == "cpu" and setup["model"] == "resnet18"
    assert setup["torch"] == torch.__version__ and isinstance(report["load_average_at_end"], float)
