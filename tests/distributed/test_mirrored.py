"""MirroredStrategy on 2 logical CPU devices trains every task model exactly as one device
does (issue 15): the same losses, weights, evaluation and predictions from the same seed and
global batches, with replicas holding very different numbers of real tokens (the per-token
mean must be over the global batch's tokens, not a mean of per-replica means).

Each run is a fresh process (logical devices must be set before TensorFlow starts). The
default run covers a decoder with and without text, and the encoder-decoder; the slow run
the other encoder task models (about a minute more)."""

import json
import os
import subprocess
import sys

import pytest

WORKER = os.path.join(os.path.dirname(__file__), "mirrored_worker.py")
DEFAULT = ("CausalLM", "EncoderClassifier+text", "Seq2Seq")
SLOW = ("EncoderClassifier", "EncoderTokenClassifier", "MaskedLM")


def run_worker(tasks):
    completed = subprocess.run([sys.executable, WORKER, *tasks], capture_output=True, text=True, timeout=900,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def assert_same_training(result):
    assert result["loss"] < 1e-5, result["losses"]
    assert result["weights"] < 1e-4
    assert result["evaluate"] < 1e-5  # evaluated and predicted: CausalLM, EncoderClassifier+text
    assert result["predict"] < 1e-4


@pytest.fixture(scope="module")
def results():
    return run_worker(DEFAULT)


@pytest.mark.parametrize("task", DEFAULT)
def test_two_replicas_train_as_one_device(results, task):
    assert_same_training(results[task])


@pytest.mark.slow
def test_two_replicas_train_the_encoder_task_models_as_one_device():
    results = run_worker(SLOW)
    for task in SLOW:
        assert_same_training(results[task])


def test_a_strategy_trained_model_saves_loads_generates_and_exports_as_one_trained_without(results):
    assert results["generate_equal"] is True
    # The SavedModel (exported from the mirrored variables) and the ONNX model (from the .keras
    # file loaded on one device) answer as the one-device model: float32 logits, other ops.
    assert results["export"]["savedmodel"] < 1e-4, results["export"]
    assert results["export"]["onnx"] < 1e-4, results["export"]


def test_jit_compile_falls_back_with_a_message_under_two_replicas(results):
    assert {"CausalLM", "Seq2Seq", "EncoderClassifier"} <= set(results["fallback_warnings"])
