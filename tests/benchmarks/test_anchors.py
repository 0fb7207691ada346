"""Each from-scratch anchor script (benchmarks/anchors/) runs end to end in its smoke mode: a few
steps on a few hundred examples, writing its JSON and both PNGs; a rerun resumes (trains
nothing more) from the checkpoints in its work directory."""

import json
import os
import subprocess
import sys

import pytest

REPOSITORY = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.abspath(os.path.join(REPOSITORY, "..", "shared", "data"))
SCRIPTS = {"char_gpt": "tinyshakespeare", "conll_ner": "conll2003", "sst2": "sst2",
           "multi30k": "multi30k"}


def run_smoke(task, output_dir, *extra):
    script = os.path.join(REPOSITORY, "benchmarks", "anchors", f"{task}.py")
    command = [sys.executable, script, os.path.join(DATA, SCRIPTS[task]), "--smoke",
               "--output-dir", str(output_dir), *extra]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPOSITORY)
    assert completed.returncode == 0, completed.stderr[-3000:]
    with open(os.path.join(output_dir, f"{task}_smoke.json")) as file:
        return json.load(file)


@pytest.mark.parametrize("task", sorted(SCRIPTS))
def test_smoke_run_writes_json_and_pngs(task, tmp_path):
    if not os.path.isdir(os.path.join(DATA, SCRIPTS[task])):
        pytest.skip(f"no {SCRIPTS[task]} data at {DATA}")
    result = run_smoke(task, tmp_path)
    assert result["task"] == task and result["smoke"] is True
    for key in ("metric", "value", "anchor", "target", "config", "steps", "training_wall_s",
                "machine", "command"):
        assert key in result
    assert result["steps"] > 0 and len(result["epochs"]) == 2
    for suffix in ("_curves.png", "_attention.png"):
        with open(tmp_path / f"{task}_smoke{suffix}", "rb") as file:
            assert file.read(8) == b"\x89PNG\r\n\x1a\n"


def test_rerun_resumes_from_the_checkpoint(tmp_path):
    first = run_smoke("char_gpt", tmp_path)
    again = run_smoke("char_gpt", tmp_path, "--epochs", "3")  # one more epoch on top of the two
    assert again["steps"] == first["steps"] + first["steps"] // 2
    assert [row["epoch"] for row in again["epochs"]] == [0, 1, 2]
    assert again["epochs"][:2] == first["epochs"]
