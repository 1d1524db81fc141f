"""routines/demo.sh, shrunken (32 px, one epoch): the whole pipeline runs and leaves its outputs."""
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_pipeline_end_to_end(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "OUT": str(out), "IMSIZE": "32", "EPOCHS": "1", "STREAM_EPOCHS": "1"}
    result = subprocess.run(["bash", "routines/demo.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=1800)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for run in ("gap", "ca"):
        assert (out / run / "model.safetensors").is_file()
    assert (out / "eval_ca" / "overlays.png").stat().st_size > 10_000
    summary = json.loads((out / "eval_ca" / "summary.json").read_text())
    assert {"gradcam", "gradcam++", "attention"} <= set(summary["results"])
    assert summary["compare"], "the CA summary compares against the GAP run"
    report = out / "eval_ca" / "report.html"
    assert result.stdout.strip().splitlines()[-1].startswith(f"report: {report} ") and report.is_file()
    assert (out / "eval_ca" / "compare.html").is_file()
    stream = yaml.safe_load((out / "ca" / "args.yaml").read_text())
    assert (stream["lr"], stream["epochs"], stream["freeze"]) == (1e-4, 1, True)  # the comparisons' recipe
