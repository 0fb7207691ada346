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
    if not os.path.isdir(os.path.join(DATA, SCRIPTS["char_gpt"])):
        pytest.skip(f"no {SCRIPTS['char_gpt']} data at {DATA}")
    first = run_smoke("char_gpt", tmp_path)
    again = run_smoke("char_gpt", tmp_path, "--epochs", "3")  # one more epoch on top of the two
    assert again["steps"] == first["steps"] + first["steps"] // 2
    assert [row["epoch"] for row in again["epochs"]] == [0, 1, 2]
    assert again["epochs"][:2] == first["epochs"]


FAKE_NANOGPT_TRAIN = """import sys, time
assert "--device=cpu" in sys.argv and "--max_iters=20" in sys.argv, sys.argv
time.sleep(0.2)
print("step 0: train loss 4.2000, val loss 4.1000")
print("step 20: train loss 3.0000, val loss 3.2500")
"""


def test_nanogpt_comparison_runs_both_and_writes_the_ratio(tmp_path):
    if not os.path.isdir(os.path.join(DATA, "tinyshakespeare")):
        pytest.skip(f"no tinyshakespeare data at {DATA}")
    nanogpt = tmp_path / "nanoGPT"  # a stand-in with nanoGPT's layout and output format
    (nanogpt / "data" / "shakespeare_char").mkdir(parents=True)
    (nanogpt / "data" / "shakespeare_char" / "prepare.py").write_text(
        "import os\nassert os.path.getsize('input.txt') > 1000000\nopen('train.bin', 'wb').close()\n")
    (nanogpt / "train.py").write_text(FAKE_NANOGPT_TRAIN)
    script = os.path.join(REPOSITORY, "benchmarks", "anchors", "char_gpt_vs_nanogpt.py")
    command = [sys.executable, script, os.path.join(DATA, "tinyshakespeare"), "--smoke",
               "--repeats", "1", "--nanogpt-dir", str(nanogpt), "--nanogpt-python", sys.executable,
               "--output-dir", str(tmp_path)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPOSITORY)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert (nanogpt / "data" / "shakespeare_char" / "train.bin").exists()
    with open(tmp_path / "char_gpt_vs_nanogpt_smoke.json") as file:
        result = json.load(file)
    walls = result["median_wall_s"]
    assert walls["nanogpt"] >= 0.2 and walls["keras_transformers"] > 0
    assert result["ratio_ours_over_nanogpt"] == pytest.approx(
        walls["keras_transformers"] / walls["nanogpt"], rel=0.01)
    assert result["val_loss_estimate"]["nanogpt"] == [3.25]
    assert len(result["val_loss_estimate"]["keras_transformers"]) == 1


def test_nanogpt_comparison_refuses_a_directory_that_is_not_nanogpt(tmp_path):
    script = os.path.join(REPOSITORY, "benchmarks", "anchors", "char_gpt_vs_nanogpt.py")
    completed = subprocess.run([sys.executable, script, str(tmp_path), "--nanogpt-dir", str(tmp_path),
                                "--nanogpt-python", sys.executable], capture_output=True, text=True)
    assert completed.returncode == 2
    assert "is not a nanoGPT checkout (no train.py or data/shakespeare_char)" in completed.stderr
