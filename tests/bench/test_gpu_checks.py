"""bench/gpu_checks.sh runs where minutes of a lent card are counted: every command it runs takes its flags as
written (checked here, on the CPU, by each script's own parser), and every result file it writes is one a README
table quotes, and the other way round."""
import importlib
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from bench import readme
from utils.evaluation.methods import method_names

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_checks.sh"
VARIABLES = {"PY": "python3", "OUT": "OUT", "RUN": "RUN"}


def _steps() -> list[list[str]]:
    """The command of every ``step LIMIT COMMAND...`` line, continuation lines joined and variables expanded."""
    text = SCRIPT.read_text().replace("\\\n", " ")
    common = shlex.split(re.search(r"^\s*local common=\((.*)\)$", text, re.M).group(1))
    commands = []
    for line in text.splitlines():
        if not line.strip().startswith("step "):
            continue
        words = []
        for word in shlex.split(line)[2:]:
            if word == "${common[@]}":
                words.extend(common)
            else:
                words.append(re.sub(r"\$(\w+)", lambda match: VARIABLES[match.group(1)], word))
        commands.append(words)
    return commands


def _module_and_argv(command: list[str]) -> tuple[str, list[str]]:
    """The Python module a step runs and the flags it passes to it."""
    if command[0] == "torchrun":
        script = next(index for index, word in enumerate(command) if word.endswith(".py"))
        return Path(command[script]).stem, command[script + 1:]
    assert command[0] == VARIABLES["PY"], command
    if command[1] == "-m":
        return command[2], command[3:]
    return Path(command[1]).stem, command[2:]


STEPS = _steps()


def test_the_script_has_every_step():
    modules = {_module_and_argv(command)[0] for command in STEPS}
    assert {"bench.bench_training", "bench.bench_saliency", "bench.bench_metrics", "bench.bench_perchannel",
            "bench.profile_gradient", "bench.bench_compile", "bench.paper_table", "main_INets",
            "recognition_imagenet", "objrecon_imagenet"} <= modules


@pytest.mark.parametrize("command", STEPS, ids=[" ".join(command[:4]) for command in STEPS])
def test_every_step_parses_its_flags(command, capsys):
    module, argv = _module_and_argv(command)
    parser = importlib.import_module(module).build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"{' '.join(command)}: {capsys.readouterr().err.strip()}")
    if getattr(args, "method", None):  # the scripts resolve method names after parsing
        method_names(args.method)


def test_every_result_file_is_quoted_by_a_readme_table_and_back():
    written = set()
    for command in STEPS:
        if command[1:3] == ["-m", "bench.profile_gradient"]:
            written.add(Path(command[command.index("--out") + 1]).with_suffix(".json").name)
        elif "--out" in command:
            written.add(Path(command[command.index("--out") + 1]).name)
    quoted = {Path(file).name for block in readme.BLOCKS.values() for file in block.files if file.startswith("gpu/")}
    assert written == quoted


def _run_script(tmp_path: Path, *groups: str, budget: str) -> subprocess.CompletedProcess:
    """The script with a stand-in interpreter that takes 3 s a command (no card, no benchmark run)."""
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\nsleep 3\n")
    python.chmod(0o755)
    env = {**os.environ, "PYTHON": str(python), "OUT": str(tmp_path / "out"), "RUN": str(tmp_path / "run"),
           "BUDGET": budget}
    return subprocess.run(["bash", str(SCRIPT), *groups], env=env, capture_output=True, text=True, timeout=120)


def test_the_budget_skips_what_it_cannot_fit(tmp_path):
    result = _run_script(tmp_path, "targets", budget="20")
    log = (tmp_path / "out" / "gpu_checks.log").read_text()
    assert result.stdout == log
    ran = re.findall(r"^### (\d+) s \(limit (\d+) s\)$", log, re.M)
    skipped = re.findall(r"^### SKIPPED \(budget spent\): \S+ -m (\S+)", log, re.M)
    assert len(ran) + len(skipped) == 5 and len(ran) >= 2 and len(skipped) >= 1, log
    assert all(int(limit) <= 20 for _, limit in ran)  # a step gets at most what is left of the budget
    assert skipped[-1] == "bench.bench_compile"  # the steps run in their order: the last ones are cut
    assert "## throughput" not in log


def test_an_unknown_group_is_a_one_line_error(tmp_path):
    result = _run_script(tmp_path, "target", budget="1")
    assert result.returncode == 2
    assert result.stderr == "unknown group target: expected targets, throughput or pipeline\n"
