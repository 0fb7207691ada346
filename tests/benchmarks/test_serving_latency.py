"""benchmarks/serving_latency.py (issue 20) runs end to end in its smoke mode (tiny encoder and
CausalLM): every artifact exports, loads in its own serving process without Keras or
keras_transformers, answers the parity inputs as the Keras model does, and gets timed."""

import json
import os
import subprocess
import sys

import pytest

REPOSITORY = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(REPOSITORY, "benchmarks", "serving_latency.py")
SIDES = {"encoder_ids": {"ours_tf", "ours_xla", "ours_onnx", "ours_onnx_1thread", "keras_hub_tf", "keras_hub_onnx"},
         "encoder_text": {"ours_tf", "ours_xla"},
         "lm_generate": {"ours_tf", "ours_xla", "ours_onnx", "keras_hub_tf"},
         "lm_forward": {"ours_tf", "ours_xla", "ours_onnx", "ours_onnx_1thread", "keras_hub_tf"}}
STATISTICS = {"n", "p50_ms", "p99_ms", "min_ms", "max_ms", "mean_ms", "examples_per_s", "first_call_ms"}


@pytest.mark.slow  # 1-3 minutes on a busy 2-core machine: 9 exports, 9 serving processes
def test_smoke_run_exports_serves_agrees_and_times(tmp_path):
    output = tmp_path / "serving_latency.json"
    completed = subprocess.run([sys.executable, SCRIPT, "--smoke", "--output", str(output)],
                               capture_output=True, text=True, timeout=800, cwd=REPOSITORY)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(output.read_text())
    assert result == json.loads(completed.stdout)  # the same object on stdout
    assert result["mode"] == "smoke" and result["export"]["errors"] == {}
    for key in ("tensorflow", "keras", "keras_hub", "onnxruntime", "tf2onnx", "keras_transformers"):
        assert key in result["versions"]
    assert {"cpu_count", "load_avg_at_start", "load_avg_at_end"} <= set(result["machine"])

    groups = result["groups"]
    assert set(groups) == {"encoder", "causal_lm"}
    for group in groups.values():
        assert group["errors"] == {}
        for name, process in group["processes"].items():
            # Served as TF Serving / an ONNX Runtime server would: no Keras, no keras_transformers.
            imported = process["imported"]
            assert not (imported["keras"] or imported["keras_hub"] or imported["keras_transformers"]), name
            assert imported["tensorflow"] != ("onnx" in name), name
            if not imported["tensorflow"]:
                assert process["session_options"]["intra_op_num_threads"] == 0  # ONNX Runtime's default
            else:
                assert process["intra_op_parallelism_threads"] == 0  # TensorFlow's default
        for cell, entry in group["cells"].items():
            kind = cell.rsplit("_L", 1)[0] if cell.startswith("encoder") else cell.rsplit("_B", 1)[0]
            assert set(entry["sides"]) == SIDES[kind], cell
            for side, stats in entry["sides"].items():
                assert STATISTICS <= set(stats), (cell, side)
                assert stats["n"] == result["settings"]["repeats"]
                assert 0 < stats["min_ms"] <= stats["p50_ms"] <= stats["p99_ms"] <= stats["max_ms"]
            if "ours_onnx" in SIDES[kind]:
                assert "ours_onnx/ours_tf" in entry["ratios"] and "ours_tf/keras_hub_tf" in entry["ratios"]

    # Parity: every side matched its Keras model; our ONNX matched our SavedModel.
    assert result["parity_all_ok"] is True
    encoder, lm = groups["encoder"]["parity"], groups["causal_lm"]["parity"]
    ids_cell = next(cell for cell in encoder if cell.startswith("encoder_ids"))
    assert encoder[ids_cell]["ours_onnx_vs_ours_tf"]["logits"]["ok"]
    assert encoder[ids_cell]["ours_onnx_vs_ours_tf"]["logits"]["max_abs_diff"] <= 1e-4
    for side in SIDES["encoder_ids"]:
        assert encoder[ids_cell][side]["logits"]["ok"], side
    text_cell = next(cell for cell in encoder if cell.startswith("encoder_text"))
    assert encoder[text_cell]["ours_tf"]["label_ids"]["ok"] and encoder[text_cell]["ours_tf"]["probabilities"]["ok"]
    generate_cell = next(cell for cell in lm if cell.startswith("lm_generate"))
    for side in ("ours_tf", "ours_xla", "ours_onnx", "ours_onnx_vs_ours_tf"):
        assert lm[generate_cell][side]["generated_ids"] == {"ok": True, "exact": True, "share_equal": 1.0}, side
    assert set(result["goals"]) == {"encoder_onnx_at_most_0.6x_tf", "ours_savedmodel_ahead_of_keras_hub"}
