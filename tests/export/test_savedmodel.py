"""export_savedmodel on the four task models: TF Serving's layout and signatures, warmup
requests that replay, a TensorFlow-only process and the C++ loader that reproduce Keras,
TF Serving's op set, no XLA, dynamic shapes, and versions that appear whole or not at all."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer ops, for loading in this process)

import keras_transformers.export.savedmodel as savedmodel_module
from keras_transformers.export import (
    ExportVerificationError,
    assert_serving_ops,
    check_serving_ops,
    export_savedmodel,
    read_warmup_requests,
    serving_op_allowlist,
    xla_functions,
)
from keras_transformers.export.signatures import sample_ids
from keras_transformers.export.verify import compare_outputs, reference_outputs, replay_in_fresh_process
from tests.export.conftest import GENERATION
from tests.export.models import KINDS, TAGS, build

TEXT_OUTPUTS = {
    "classifier": {"labels": tf.string, "label_ids": tf.int32, "probabilities": tf.float32},
    "tagger": {"words": tf.string, "tags": tf.string, "num_words": tf.int32},
    "causal_lm": {"generated_text": tf.string, "generated_ids": tf.int32, "generated_lengths": tf.int32,
                  "nonfinite": tf.bool},
    "seq2seq": {"generated_text": tf.string, "generated_ids": tf.int32, "generated_lengths": tf.int32,
                "nonfinite": tf.bool},
}
ID_INPUTS = {
    "classifier": ["padding_mask", "segment_ids", "token_ids"],
    "tagger": ["padding_mask", "token_ids"],
    "causal_lm": ["padding_mask", "token_ids"],
    "seq2seq": ["decoder_padding_mask", "decoder_token_ids", "encoder_padding_mask", "encoder_token_ids"],
}


def _settings(model):
    from keras_transformers.export.signatures import generation_settings

    return generation_settings(model, **GENERATION) if hasattr(model, "generate") else None


@pytest.mark.parametrize("kind", KINDS)
def test_layout_signatures_and_assets(exported, kind):
    model, path = exported(kind)
    assert os.path.basename(path) == "1"
    assert sorted(os.listdir(os.path.dirname(path))) == ["1"]  # no temporary directory left
    for name in ("saved_model.pb", "variables", "assets/export.json", "assets/model_config.json",
                 "assets.extra/tf_serving_warmup_requests"):
        assert os.path.exists(os.path.join(path, name)), name
    loaded = tf.saved_model.load(path)
    assert sorted(loaded.signatures) == ["predict_ids", "serving_default"]
    text = loaded.signatures["serving_default"]
    assert text.structured_input_signature[1] == {"text": tf.TensorSpec([None], tf.string, name="text")}
    assert {k: v.dtype for k, v in text.structured_outputs.items()} == TEXT_OUTPUTS[kind]
    ids = loaded.signatures["predict_ids"]
    assert sorted(ids.structured_input_signature[1]) == ID_INPUTS[kind]
    assert all(spec.shape.as_list() == [None, None] and spec.dtype == tf.int32
               for spec in ids.structured_input_signature[1].values())
    assert list(ids.structured_outputs) == ["logits"]

    description = json.load(open(os.path.join(path, "assets", "export.json")))
    assert description["model"] == type(model).__name__ and description["jit_compile"] is False
    assert sorted(description["signatures"]["predict_ids"]["inputs"]) == ID_INPUTS[kind]
    config = json.load(open(os.path.join(path, "assets", "model_config.json")))
    assert config["class_name"] == type(model).__name__
    if kind in ("classifier", "tagger"):
        vocabulary = open(os.path.join(path, "assets", "tokenizer", "vocabulary.txt")).read().split("\n")
        assert vocabulary[:3] == ["[PAD]", "[UNK]", "[CLS]"]
        names = open(os.path.join(path, "assets", "label_names.txt")).read().split()
        assert names == (["negative", "neutral", "positive"] if kind == "classifier" else TAGS)
    else:
        assert description["generation"]["max_new_tokens"] == GENERATION["max_new_tokens"]
        assert description["generation"]["stop_token_ids"] == [3]


@pytest.mark.parametrize("kind", KINDS)
def test_warmup_requests_parse_and_replay_to_keras_outputs(exported, kind):
    model, path = exported(kind)
    requests = read_warmup_requests(path)
    # Each signature on a batch of seven and a batch of one, of different lengths.
    assert [(name, next(iter(inputs.values())).shape[0]) for name, inputs in requests] == [
        ("predict_ids", 7), ("predict_ids", 1), ("serving_default", 7), ("serving_default", 1)]
    assert requests[0][1]["token_ids" if kind != "seq2seq" else "encoder_token_ids"].shape == (7, 9)
    loaded = tf.saved_model.load(path)
    for name, inputs in requests:
        outputs = loaded.signatures[name](**{key: tf.constant(value) for key, value in inputs.items()})
        compare_outputs(reference_outputs(model, name, inputs, _settings(model)),
                        {key: value.numpy() for key, value in outputs.items()}, name)


@pytest.mark.parametrize("kind", KINDS)
def test_tensorflow_only_process_reproduces_keras(exported, kind):
    model, path = exported(kind)
    replayed = replay_in_fresh_process(path)
    requests = read_warmup_requests(path)
    assert len(replayed) == len(requests) == 4
    for (name, inputs), outputs in zip(requests, replayed):
        expected = reference_outputs(model, name, inputs, _settings(model))
        assert sorted(outputs) == sorted(expected)
        compare_outputs(expected, outputs, name)


def test_text_outputs_are_the_task_answers(exported):
    model, path = exported("classifier")
    outputs = tf.saved_model.load(path).signatures["serving_default"](text=tf.constant(["the film was great"]))
    assert outputs["labels"].numpy()[0].decode() in ["negative", "neutral", "positive"]
    np.testing.assert_allclose(outputs["probabilities"].numpy().sum(-1), 1.0, rtol=1e-6)

    model, path = exported("tagger")
    outputs = tf.saved_model.load(path).signatures["serving_default"](text=tf.constant(["Peter Blackburn", "EU"]))
    assert outputs["words"].numpy().tolist() == [[b"Peter", b"Blackburn"], [b"EU", b""]]
    assert outputs["num_words"].numpy().tolist() == [2, 1]
    tags = outputs["tags"].numpy()
    assert set(tags[0]) <= {t.encode() for t in TAGS} and tags[1, 1] == b""
    expected = tf.function(model.tag_words)(tf.ragged.constant([["Peter", "Blackburn"]]))
    assert tags[0].tolist() == expected[0].numpy().tolist()

    model, path = exported("causal_lm")
    texts = ["An old man", "hello"]
    outputs = tf.saved_model.load(path).signatures["serving_default"](text=tf.constant(texts))
    expected = model.generate_text(texts, max_new_tokens=GENERATION["max_new_tokens"])
    assert [t.decode() for t in outputs["generated_text"].numpy()] == expected
    assert outputs["generated_ids"].shape == (2, GENERATION["max_new_tokens"])


@pytest.mark.parametrize("kind", ["classifier", "seq2seq"])
def test_dynamic_batch_and_sequence_lengths(exported, kind):
    model, path = exported(kind)
    predict_ids = tf.saved_model.load(path).signatures["predict_ids"]
    for batch, length in [(1, 5), (7, 5), (1, 12), (7, 12)]:
        inputs = sample_ids(model, batch, length, seed=batch + length)
        got = predict_ids(**{key: tf.constant(value) for key, value in inputs.items()})["logits"].numpy()
        want = np.asarray(model({key: tf.constant(value) for key, value in inputs.items()}))
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_ops_are_tf_servings_and_nothing_needs_xla(exported, kind):
    _, path = exported(kind)
    assert check_serving_ops(path) == []
    assert xla_functions(path) == []


def test_cpp_loader_runs_every_signature_like_python(exported):
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed: the C++ serving check cannot be built")
    from keras_transformers.export.cpp import build_serving_check, verify_with_cpp

    binary = build_serving_check()
    for kind in KINDS:
        model, path = exported(kind)
        assert verify_with_cpp(model, path, binary=binary) == 4  # both signatures, batches of 7 and 1


def test_cpp_check_catches_a_difference(exported, monkeypatch):
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    import keras_transformers.export.verify as verify_module
    from keras_transformers.export.cpp import verify_with_cpp

    model, path = exported("tagger")
    real = verify_module.reference_outputs

    def other_tags(*args):
        outputs = real(*args)
        if "tags" in outputs:
            outputs["tags"] = np.where(outputs["tags"] == b"", b"", b"B-XYZ").astype(object)
        return outputs

    monkeypatch.setattr(verify_module, "reference_outputs", other_tags)
    with pytest.raises(ExportVerificationError, match=r"(?s)C\+\+ LoadSavedModel, signature 'serving_default'.*'tags' differs"):
        verify_with_cpp(model, path)


def test_cpp_check_reports_a_missing_signature(exported):
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    from keras_transformers.export.cpp import run_serving_check

    _, path = exported("classifier")
    with pytest.raises(RuntimeError, match="no signature named classify"):
        run_serving_check(path, "classify", {"text": np.array([b"a"], dtype=object)})


def test_next_version_and_no_overwrite(tmp_path):
    model = build("classifier")
    first = export_savedmodel(model, tmp_path, verify=False)
    second = export_savedmodel(model, tmp_path, verify=False)
    assert [os.path.basename(first), os.path.basename(second)] == ["1", "2"]
    assert os.path.basename(export_savedmodel(model, tmp_path, version=7, verify=False)) == "7"
    with pytest.raises(FileExistsError, match="Version 2 already exists"):
        export_savedmodel(model, tmp_path, version=2, verify=False)
    with pytest.raises(ValueError, match="`version` must be a positive integer .* got 0"):
        export_savedmodel(model, tmp_path, version=0)
    assert sorted(os.listdir(tmp_path)) == ["1", "2", "7"]


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, ExportVerificationError])
def test_an_interrupted_export_leaves_no_version(tmp_path, monkeypatch, interruption):
    def interrupted(path):
        assert os.path.exists(os.path.join(path, "saved_model.pb"))  # written, not yet in place
        raise interruption("stopped during verification")

    monkeypatch.setattr(savedmodel_module, "replay_in_fresh_process", interrupted)
    with pytest.raises(interruption, match="stopped during verification"):
        export_savedmodel(build("classifier"), tmp_path)
    assert os.listdir(tmp_path) == []


def test_an_op_tf_serving_lacks_fails_the_export_by_name(tmp_path, monkeypatch):
    strict = serving_op_allowlist() - {"BatchMatMulV2"}
    monkeypatch.setattr(savedmodel_module, "assert_serving_ops", lambda path: assert_serving_ops(path, strict))
    with pytest.raises(ValueError, match="BatchMatMulV2"):
        export_savedmodel(build("tagger"), tmp_path)
    assert os.listdir(tmp_path) == []


def test_verification_catches_a_model_that_differs(tmp_path, monkeypatch):
    model = build("classifier")
    real = savedmodel_module.reference_outputs

    def off_by_a_little(*args):
        outputs = real(*args)
        if "logits" in outputs:
            outputs["logits"] = outputs["logits"] + 1e-3
        return outputs

    monkeypatch.setattr(savedmodel_module, "reference_outputs", off_by_a_little)
    with pytest.raises(ExportVerificationError, match=r"'logits' differs by up to 0\.001 \(limit 1e-05\)"):
        export_savedmodel(model, tmp_path)
    assert os.listdir(tmp_path) == []


def test_jit_compile_keeps_xla_for_gpu_serving(tmp_path):
    path = export_savedmodel(build("classifier"), tmp_path, jit_compile=True, verify=False)
    assert xla_functions(path)  # the attention core, marked for XLA
    assert check_serving_ops(path) == []


def test_generation_settings_are_checked():
    with pytest.raises(ValueError, match="`generation` settings apply to a CausalLM or Seq2Seq"):
        export_savedmodel(build("classifier"), "unused", generation={"max_new_tokens": 4})
    with pytest.raises(ValueError, match=r"Unknown generation settings \['max_tokens'\]"):
        export_savedmodel(build("causal_lm"), "unused", generation={"max_tokens": 4})
    with pytest.raises(ValueError, match="`max_new_tokens` .48. must leave room for a prompt"):
        export_savedmodel(build("causal_lm"), "unused", generation={"max_new_tokens": 48})
    assert not os.path.exists("unused") or os.listdir("unused") == []


def test_beam_search_export_reproduces_keras(tmp_path):
    model = build("seq2seq")
    path = export_savedmodel(model, tmp_path, generation={"max_new_tokens": 6, "num_beams": 3}, verify=False)
    texts = ["abc", "An old man walks"]
    outputs = tf.saved_model.load(path).signatures["serving_default"](text=tf.constant(texts))
    assert [t.decode() for t in outputs["generated_text"].numpy()] == model.generate_text(
        texts, max_new_tokens=6, num_beams=3)
