"""export_onnx on the four task models: files that pass onnx.checker and run in ONNX Runtime
with dynamic batch and sequence axes, logits equal to Keras (1e-4), an ONNX generate loop
(NumPy + onnxruntime, no TensorFlow) that gives Keras' greedy ids, and failures that raise."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import keras_transformers.export.onnx as onnx_module
from keras_transformers.export import ExportVerificationError
from keras_transformers.export.onnx import export_onnx
from keras_transformers.export.onnx_generate import OnnxGenerator
from keras_transformers.export.signatures import sample_ids
from tests.export.models import KINDS, build

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

FILES = {"classifier": ["model.onnx"], "tagger": ["model.onnx"],
         "causal_lm": ["decoder_step.onnx", "generation.json", "model.onnx", "onnx_generate.py"],
         "seq2seq": ["decoder_step.onnx", "encoder.onnx", "generation.json", "model.onnx", "onnx_generate.py"]}


@pytest.fixture(scope="module")
def onnx_exports(tmp_path_factory):
    cache = {}

    def get(kind):
        if kind not in cache:
            model = build(kind)
            cache[kind] = model, export_onnx(model, tmp_path_factory.mktemp("onnx") / kind)
        return cache[kind]

    return get


@pytest.mark.parametrize("kind", KINDS)
def test_files_are_valid_onnx_with_dynamic_axes(onnx_exports, kind):
    _, path = onnx_exports(kind)
    assert sorted(os.listdir(path)) == FILES[kind]
    assert not any(name.startswith(".") for name in os.listdir(os.path.dirname(path)))  # no leftovers
    model = onnx.load(os.path.join(path, "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    for graph_input in model.graph.input:
        dims = graph_input.type.tensor_type.shape.dim
        assert len(dims) == 2 and not any(d.HasField("dim_value") for d in dims), graph_input.name
    assert [o.name for o in model.graph.output] == ["logits"]


@pytest.mark.parametrize("kind", KINDS)
def test_logits_match_keras_for_two_batch_sizes_and_lengths(onnx_exports, kind):
    model, path = onnx_exports(kind)
    session = onnxruntime.InferenceSession(os.path.join(path, "model.onnx"), providers=["CPUExecutionProvider"])
    for batch, length in [(1, 5), (7, 5), (1, 11), (7, 11)]:
        inputs = sample_ids(model, batch, length, seed=length)
        (got,) = session.run(None, inputs)
        want = np.asarray(model({key: tf.constant(value) for key, value in inputs.items()}))
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("kind", ["causal_lm", "seq2seq"])
def test_onnx_generate_loop_gives_keras_ids(onnx_exports, kind):
    model, path = onnx_exports(kind)
    generator = OnnxGenerator(path)
    rng = np.random.default_rng(1)
    for lengths in [(5,), (3, 1, 6, 2, 4, 7, 2)]:  # batch 1 and 7, prompts of different lengths
        prompts = [rng.integers(4, 128, size=n).tolist() for n in lengths]
        if kind == "causal_lm":
            want = model.generate(prompts, 12, stop_token_ids=[3])
            got = generator.generate(prompts, 12, stop_token_ids=[3])
        else:
            sources = [rng.integers(4, 128, size=n + 3).tolist() for n in lengths]
            starts = [[2]] * len(lengths)
            out = model.generate(sources, 12, decoder_token_ids=starts, stop_token_ids=[3])
            want = {"token_ids": out["decoder_token_ids"], "padding_mask": out["decoder_padding_mask"]}
            got = generator.generate(starts, 12, stop_token_ids=[3], encoder_token_ids=sources)
        np.testing.assert_array_equal(got["padding_mask"], want["padding_mask"])
        np.testing.assert_array_equal(np.where(got["padding_mask"], got["token_ids"], 0),
                                      np.where(want["padding_mask"], want["token_ids"], 0))


def test_generate_loop_runs_from_the_export_directory_without_tensorflow(onnx_exports):
    model, path = onnx_exports("causal_lm")
    script = (
        "import sys, json\n"
        "sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        f"sys.path.insert(0, {str(path)!r})\n"
        "from onnx_generate import OnnxGenerator\n"
        "out = OnnxGenerator(sys.path[0]).generate([[5, 6, 7], [8]], 6)\n"
        "print(json.dumps(out['token_ids'].tolist()))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == model.generate([[5, 6, 7], [8]], 6)["token_ids"].tolist()


def test_a_graph_tf2onnx_cannot_convert_raises_and_writes_nothing(tmp_path, monkeypatch):
    # With the attention core left marked for XLA, tf2onnx still "succeeds", writing a file
    # that is not a runnable ONNX model; the export must catch that.
    from keras_transformers.ops import jit_compile_scope

    monkeypatch.setattr(onnx_module, "jit_compile_scope", lambda enabled: jit_compile_scope(True))
    with pytest.raises(ExportVerificationError, match="classifier|model.onnx"):
        export_onnx(build("classifier"), tmp_path / "out")
    assert os.listdir(tmp_path) == []


def test_refuses_a_directory_with_files(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        export_onnx(build("classifier"), tmp_path / "out")


def test_generator_checks_its_inputs(onnx_exports):
    _, path = onnx_exports("causal_lm")
    generator = OnnxGenerator(path)
    with pytest.raises(ValueError, match="more than max_length=48"):
        generator.generate([[5] * 40], 10)
    with pytest.raises(ValueError, match="needs at least one token"):
        generator.generate([[5], []], 2)
