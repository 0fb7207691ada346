"""benchmarks/alignment_sentiment.py (issue 18) runs end to end in its smoke mode (tiny LM, judges
and DPO on a few hundred SST-2 phrases), writing its JSON and curves PNG; a rerun trains nothing
and reports the same numbers from the stages saved in its work directory."""

import json
import os
import subprocess
import sys

import pytest

REPOSITORY = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.abspath(os.path.join(REPOSITORY, "..", "shared", "data", "sst2"))
SCRIPT = os.path.join(REPOSITORY, "benchmarks", "alignment_sentiment.py")


def run_smoke(output_dir):
    completed = subprocess.run([sys.executable, SCRIPT, DATA, "--smoke", "--output-dir", str(output_dir)],
                               capture_output=True, text=True, timeout=800, cwd=REPOSITORY)
    assert completed.returncode == 0, completed.stderr[-3000:]
    with open(os.path.join(output_dir, "alignment_sentiment_smoke.json")) as file:
        return json.load(file), completed.stderr


@pytest.mark.slow  # a few minutes on a busy 2-core machine: five stages, each XLA-compiled
def test_smoke_run_writes_json_and_png_and_a_rerun_resumes(tmp_path):
    if not os.path.isdir(DATA):
        pytest.skip(f"no SST-2 data at {DATA}")
    result, log = run_smoke(tmp_path)
    assert result["task"] == "alignment_sentiment" and result["smoke"] is True
    assert set(result["stages"]) == {"lm", "judge_1", "judge_2", "pairs", "dpo", "evaluation"}
    assert result["steps"] == result["stages"]["dpo"]["steps"] > 0
    evaluation = result["evaluation"]
    for side in ("before", "after"):
        for key in ("positive_share_judge_2", "positive_share_judge_1", "perplexity_under_reference",
                    "kl_per_token_sampled", "kl_per_token_exact"):
            assert key in evaluation[side]
        assert 0.0 <= evaluation[side]["positive_share_judge_2"] <= 1.0
        assert evaluation["samples"][side]
    assert evaluation["before"]["kl_per_token_exact"] == pytest.approx(0.0, abs=1e-6)  # π_ref to itself
    assert result["value"] == evaluation["after"]["positive_share_judge_2"]
    assert result["pairs"]["pairs"] > 0
    with open(tmp_path / "alignment_sentiment_smoke_curves.png", "rb") as file:
        assert file.read(8) == b"\x89PNG\r\n\x1a\n"
    for name in ("vocabulary.txt", "lm.keras", "judge_1.keras", "judge_2.keras", "pairs.npz",
                 "policy.keras", "evaluation.json", "stages.json"):
        assert (tmp_path / "work" / "alignment_sentiment_smoke" / name).exists(), name
    assert "DPO:" in log

    again, log = run_smoke(tmp_path)  # every stage is loaded: nothing trains, the numbers stay
    assert "LM:" not in log and "judge_1 (seed" not in log and "DPO:" not in log, log[-2000:]
    assert again["stages"] == result["stages"] and again["evaluation"] == result["evaluation"]
