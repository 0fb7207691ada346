"""The Prefect flow (pipelines/train_flow.py) under Prefect's test harness, in a fresh process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_flow_prepares_trains_evaluates_and_exports(tmp_path):
    pytest.importorskip("prefect")
    lines = [f"{'the cat sat' if i % 2 else 'a dog ran'} on the mat {i % 7}" for i in range(200)]
    (tmp_path / "lm.txt").write_text("\n".join(lines) + "\n")
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(REPOSITORY)!r})\n"
        "from prefect.testing.utilities import prefect_test_harness\n"
        "from pipelines.train_flow import train_evaluate_export\n"
        "with prefect_test_harness():\n"
        "    result = train_evaluate_export('causal-lm', 'lm.txt', 'out', epochs=2, preset='tiny',\n"
        "                                   overrides={'num_layers': '1'}, batch_size=16, sequence_length=32,\n"
        "                                   verify_export=False, jit_compile=False)\n"
        "print('RESULT ' + json.dumps(result, default=str))\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PREFECT_HOME": str(tmp_path / "prefect")}
    process = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                             timeout=900, env=env)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-5000:]
    result = json.loads(process.stdout.split("RESULT ", 1)[1])
    assert result["prepared"]["examples"] == 180 and result["prepared"]["validation_examples"] == 20
    assert result["train"]["epochs"] == 2 and not result["train"]["interrupted"]
    # The evaluate step scored the held-out lines with the trained model: the last epoch's
    # validation loss, as training logged it.
    assert result["metrics"]["loss"] == pytest.approx(result["train"]["metrics"]["val_loss"], rel=1e-4)
    assert result["export"] == str(tmp_path / "out" / "serving" / "1")
    assert (tmp_path / "out" / "serving" / "1" / "saved_model.pb").exists()
    assert (tmp_path / "out" / "run" / "model.keras").exists()
