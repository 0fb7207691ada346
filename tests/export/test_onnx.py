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
from tests.export.readable import assert_world_readable

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

FILES = {"classifier": ["model.onnx"], "tagger": ["model.onnx"],
         "causal_lm": ["decoder_step.onnx", "generation.json", "model.onnx", "onnx_generate.py"],
         "seq2seq": ["decoder_step.onnx", "encoder.onnx", "generation.json", "model.onnx", "onnx_generate.py"]}


@pytest.fixture(scope="module")
def onnx_exports(tmp_path_factory):
    """``onnx_exports(kind)`` → ``(model, directory)``, each exported (verified) once. Beside
    each, a killed export's leftovers are planted first (a half-written hidden temporary and
    a dead process's lock file), which the export must remove."""
    cache = {}

    def get(kind):
        if kind not in cache:
            model = build(kind)
            parent = tmp_path_factory.mktemp("onnx")
            stale = parent / f".{kind}.tmp-killed"
            stale.mkdir(mode=0o700)
            (stale / "model.onnx").write_bytes(b"half written")
            (parent / f".{kind}.lock").write_text("999999\n")
            (parent / ".other.tmp-x").mkdir()  # another target's temporary: not ours to remove
            cache[kind] = model, export_onnx(model, parent / kind)
        return cache[kind]

    return get


@pytest.mark.parametrize("kind", KINDS)
def test_files_are_valid_onnx_with_dynamic_axes(onnx_exports, kind):
    _, path = onnx_exports(kind)
    assert sorted(os.listdir(path)) == FILES[kind]
    assert sorted(os.listdir(os.path.dirname(path))) == [".other.tmp-x", kind]  # no leftovers
    model = onnx.load(os.path.join(path, "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    for graph_input in model.graph.input:
        dims = graph_input.type.tensor_type.shape.dim
        assert len(dims) == 2 and not any(d.HasField("dim_value") for d in dims), graph_input.name
    assert [o.name for o in model.graph.output] == ["logits"]


@pytest.mark.parametrize("kind", ["classifier", "causal_lm"])
def test_files_are_readable_by_any_user(onnx_exports, kind):
    _, path = onnx_exports(kind)
    assert_world_readable(path)  # onnx_generate.py included (copied from the installed package)


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


# ----------------------------------------------------------------------------- range checks
# ONNX cannot raise: a row that fails a check the Keras model makes gives NaN (issue 14, item 5),
# and the other rows are exactly what they are without it.

ID_KEYS = {"classifier": ["token_ids", "segment_ids"], "tagger": ["token_ids"], "causal_lm": ["token_ids"],
           "seq2seq": ["encoder_token_ids", "decoder_token_ids"]}
LIMITS = {"token_ids": 128, "segment_ids": 2}  # the character models' vocabulary; BERT-like segments


def _session(path, name="model.onnx"):
    return onnxruntime.InferenceSession(os.path.join(path, name), providers=["CPUExecutionProvider"])


def _assert_only_row_is_nan(got, good, row):
    assert np.isnan(got[row]).all(), got[row]
    others = [i for i in range(len(good)) if i != row]
    np.testing.assert_array_equal(got[others], good[others])  # exactly, not within a tolerance


@pytest.mark.parametrize("kind", KINDS)
def test_out_of_range_ids_and_non_binary_masks_give_nan_rows(onnx_exports, kind):
    model, path = onnx_exports(kind)
    session = _session(path)
    inputs = sample_ids(model, 3, 7, seed=3)
    (good,) = session.run(None, inputs)
    vocab = model.config.vocab_size if hasattr(model, "config") else model.backbone.config.vocab_size
    for key in ID_KEYS[kind]:
        limit = vocab if key != "segment_ids" else model.backbone.config.type_vocab_size
        for bad in (-1, -limit, limit, 10**9):  # -1 used to wrap to limit - 1; limit used to fail the batch
            feeds = {name: value.copy() for name, value in inputs.items()}
            feeds[key][1, 4] = bad
            _assert_only_row_is_nan(session.run(None, feeds)[0], good, 1)
    for key in [name for name in inputs if name.endswith("padding_mask")]:
        for bad in (2, -1):
            feeds = {name: value.copy() for name, value in inputs.items()}
            feeds[key][2, 0] = bad
            _assert_only_row_is_nan(session.run(None, feeds)[0], good, 2)


@pytest.mark.parametrize("kind", KINDS)
def test_over_long_inputs_give_nan_and_max_length_still_matches_keras(onnx_exports, kind):
    # The classifier, tagger and seq2seq have learned positions (this failed with "broadcast
    # ... 48 by 49"), the CausalLM rotary ones (this passed silently).
    model, path = onnx_exports(kind)
    config = model.config if hasattr(model, "config") else model.backbone.config
    session = _session(path)
    limit = config.max_length
    inputs = sample_ids(model, 2, limit, seed=4)
    (got,) = session.run(None, inputs)
    want = np.asarray(model({key: tf.constant(value) for key, value in inputs.items()}))
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert np.isfinite(got).all()
    for length in (limit + 1, 2 * limit + 3):
        inputs = sample_ids(model, 2, length, seed=5)
        if kind == "seq2seq":  # each side alone too long
            for key in ("encoder", "decoder"):
                feeds = {**sample_ids(model, 2, 5, seed=6)}
                feeds.update({name: value for name, value in inputs.items() if name.startswith(key)})
                (got,) = session.run(None, feeds)
                assert got.shape[:2] == (2, feeds["decoder_token_ids"].shape[1]) and np.isnan(got).all()
        else:
            (got,) = session.run(None, inputs)
            assert got.shape[0] == 2 and np.isnan(got).all()
            if got.ndim == 3:
                assert got.shape[1] == length  # the length asked for, all NaN


@pytest.mark.parametrize("kind", ["causal_lm", "seq2seq"])
def test_decoder_step_refuses_bad_positions_ids_and_masks_with_nan(onnx_exports, kind):
    model, path = onnx_exports(kind)
    session = _session(path, "decoder_step.onnx")
    specs = onnx_module._graphs(model)["decoder_step"][1]  # builds no graph
    feeds = onnx_module._sample_feeds(model, "decoder_step", specs, 3, 6)  # cache of 6 slots, positions 3..5
    good = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))["logits"]
    assert np.isfinite(good).all()
    changes = [("positions", -1), ("positions", 6), ("positions", -6), ("token_ids", -1), ("token_ids", 128)]
    if kind == "seq2seq":
        changes.append(("encoder_padding_mask", 2))
    for key, bad in changes:
        changed = {name: value.copy() for name, value in feeds.items()}
        changed[key][1, -1] = bad
        outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, changed)))
        _assert_only_row_is_nan(outputs["logits"], good, 1)


def test_encoder_refuses_bad_ids_and_over_long_sources_with_nan(onnx_exports):
    model, path = onnx_exports("seq2seq")
    session = _session(path, "encoder.onnx")
    feeds = {key: sample_ids(model, 3, 6, seed=7)[key] for key in ("encoder_token_ids", "encoder_padding_mask")}
    good = session.run(None, feeds)
    feeds["encoder_token_ids"][0, 1] = -1
    for got, want in zip(session.run(None, feeds), good):
        _assert_only_row_is_nan(got, want, 0)
    long = {key: sample_ids(model, 2, model.config.max_length + 1, seed=8)[key]
            for key in ("encoder_token_ids", "encoder_padding_mask")}
    for got in session.run(None, long):
        assert got.shape[2] == model.config.max_length + 1 and np.isnan(got).all()
