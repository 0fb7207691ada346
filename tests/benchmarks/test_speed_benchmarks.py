"""The speed benchmarks of issue 20 (generate_throughput, head_layout, quantize_decode) run end to
end on tiny settings and write JSON whose derived numbers follow from the measured ones. No
timing is asserted: speed claims live in benchmarks/results, measured on an idle machine."""

import json
import os
import subprocess
import sys

import pytest

REPOSITORY = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def run_benchmark(script, tmp_path, *arguments, timeout=600):
    output = tmp_path / f"{script}.json"
    completed = subprocess.run(
        [sys.executable, os.path.join(REPOSITORY, "benchmarks", f"{script}.py"), *arguments,
         "--output", str(output)], capture_output=True, text=True, timeout=timeout, cwd=REPOSITORY)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(output.read_text())


def test_generate_throughput_runs_both_libraries_and_derives_its_ratios(tmp_path):
    # About 20 s idle: two models per batch size, compiled once each, one timed call.
    result = run_benchmark("generate_throughput", tmp_path, "--shape", "tiny", "--repeats", "1",
                           "--new-tokens", "8")
    assert result["new_tokens"] == 8 and set(result["shapes"]) == {"tiny"}
    tiny = result["shapes"]["tiny"]
    for batch in (1, 8):
        cell = tiny[f"batch_{batch}"]
        for side in ("ours", "keras_hub"):
            stats = cell[side]
            assert stats["tokens_per_s"] == pytest.approx(batch * 8 / stats["median_call_s"])
            assert stats["share_of_lm_head_alone"] == pytest.approx(
                stats["tokens_per_s"] / cell["lm_head_alone_tokens_per_s"])
            assert stats["first_call_s"] > 0
        assert cell["speedup_ours_over_keras_hub"] == pytest.approx(
            cell["ours"]["tokens_per_s"] / cell["keras_hub"]["tokens_per_s"])


def test_head_layout_times_both_forms_and_the_choice_for_every_weight(tmp_path):
    result = run_benchmark("head_layout", tmp_path, "--rows", "1", "--steps", "2", "--repeats", "1")
    cells = result["cells"]
    assert [50257, 128] in [cell["weights"] for cell in cells]
    for cell in cells:
        assert cell["rows"] == 1
        best = max(cell["transposed_dot"], cell["single_row"])
        assert cell["chosen_over_best"] == pytest.approx(cell["chosen"] / best, abs=2e-3)
        assert cell["single_row_over_transposed_dot"] == pytest.approx(
            cell["single_row"] / cell["transposed_dot"], abs=2e-3)


@pytest.mark.slow  # about a minute idle: the 24-kernel product alone allocates 226 MB four ways
def test_quantize_decode_quick_run_measures_bytes_logits_and_perplexity(tmp_path):
    result = run_benchmark("quantize_decode", tmp_path, "--quick")
    decode = result["decode"]
    assert decode["weight_bytes_ratio"] > 3.5  # int8 kernels and tables; biases and norms stay float
    assert decode["max_abs_logit_difference"] < 0.05 * decode["max_abs_logit"]
    assert decode["speedup"] == pytest.approx(
        decode["int8"]["tokens_per_s"] / decode["float32"]["tokens_per_s"], abs=2e-3)
    quality = result["quality"]
    assert quality["relative_increase"] == pytest.approx(
        quality["int8_perplexity"] / quality["float32_perplexity"] - 1, abs=1e-4)
    assert abs(quality["relative_increase"]) < 0.01
    assert set(result["matvec_ms"]) >= {"float32", "int8_output_major_weight_only",
                                        "int8_input_major_dequantized", "int8_x_int8_keras_style"}


def test_encoder_flops_rates_follow_from_the_serving_latencies(tmp_path):
    serving = json.loads(open(os.path.join(REPOSITORY, "benchmarks", "results", "serving_latency.json")).read())
    result = run_benchmark("encoder_flops", tmp_path, "--size", "128", "--repeats", "1")
    peak = max(result["peak_gflops"].values())
    model = result["model"]
    assert set(result["cells"]) == {name for name in serving["groups"]["encoder"]["cells"]
                                    if name.startswith("encoder_ids")}
    for name, cell in result["cells"].items():
        length, batch = int(name.split("_L")[1].split("_")[0]), int(name.split("_B")[1])
        h, f = model["hidden_size"], model["intermediate_size"]
        assert cell["gflop"] == pytest.approx(
            2 * batch * length * model["num_layers"] * (4 * h * h + 2 * h * f + 2 * length * h) / 1e9)
        sides = serving["groups"]["encoder"]["cells"][name]["sides"]
        for side, rate in cell["gflops_p50"].items():
            assert rate == pytest.approx(cell["gflop"] / (sides[side]["p50_ms"] / 1e3), abs=0.06)
            assert cell["share_of_peak"][side] == pytest.approx(rate / peak, rel=1e-2, abs=1e-3)
        assert cell["onnx_rate_for_goal"] == pytest.approx(cell["gflops_p50"]["ours_tf"] / 0.6 / peak,
                                                       rel=1e-2, abs=1e-3)
