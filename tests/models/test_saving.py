"""get_config / from_config, and ``.keras`` save → load (safe mode) with identical outputs."""

import json

import keras
import numpy as np
import pytest

from keras_transformers import (
    CausalLM,
    Decoder,
    Encoder,
    EncoderClassifier,
    EncoderTokenClassifier,
    MaskedLM,
    Seq2Seq,
)
from tests.models.helpers import numpy_outputs, seq2seq_inputs, tiny_config, token_inputs


def with_segments(inputs):
    return {**inputs, "segment_ids": (np.arange(6) >= 3).astype("int32")[None].repeat(2, 0)}


# name -> (build, inputs); inputs carry padding so that masks take part.
CASES = {
    "Encoder-bert_like": (lambda: Encoder(tiny_config()), lambda: token_inputs(length=6, padding=2)),
    "Encoder-llama_like": (lambda: Encoder(tiny_config("llama_like")), lambda: token_inputs(length=6, padding=2)),
    "Encoder-segments": (lambda: Encoder(tiny_config("segments")),
                         lambda: with_segments(token_inputs(length=6, padding=2))),
    "Decoder-gpt2_like": (lambda: Decoder(tiny_config("gpt2_like")), lambda: token_inputs(length=6, padding=2)),
    "Decoder-llama_like": (lambda: Decoder(tiny_config("llama_like")), lambda: token_inputs(length=6, padding=2)),
    "Seq2Seq-transformer_like": (lambda: Seq2Seq(tiny_config("transformer_like")),
                                 lambda: seq2seq_inputs(source_padding=2, target_padding=1)),
    "Seq2Seq-t5_like": (lambda: Seq2Seq(tiny_config("t5_like", num_decoder_layers=3)),
                        lambda: seq2seq_inputs(source_padding=2, target_padding=1)),
    "Seq2Seq-llama_like": (lambda: Seq2Seq(tiny_config("llama_like", num_decoder_layers=1)),
                           lambda: seq2seq_inputs(source_padding=2, target_padding=1)),
    "EncoderClassifier-cls": (lambda: EncoderClassifier(tiny_config(), num_classes=3, pooling="cls"),
                              lambda: token_inputs(length=6, padding=2)),
    "EncoderClassifier-mean": (lambda: EncoderClassifier(tiny_config("llama_like"), num_classes=3,
                                                         pooling="mean", dropout=0.2),
                               lambda: token_inputs(length=6, padding=2)),
    "EncoderTokenClassifier": (lambda: EncoderTokenClassifier(tiny_config("gpt2_like"), num_classes=4),
                               lambda: token_inputs(length=6, padding=2)),
    "MaskedLM": (lambda: MaskedLM(tiny_config()), lambda: token_inputs(length=6, padding=2)),
    "MaskedLM-segments": (lambda: MaskedLM(Encoder(tiny_config("segments"))),
                          lambda: with_segments(token_inputs(length=6, padding=2))),
    "CausalLM-tied": (lambda: CausalLM(tiny_config("gpt2_like")), lambda: token_inputs(length=6, padding=2)),
    "CausalLM-untied": (lambda: CausalLM(tiny_config("llama_like")), lambda: token_inputs(length=6, padding=2)),
    # Mistral / Qwen2 / Llama 3 switches: sliding window, q/k/v biases only, RoPE scaling (yarn).
    "CausalLM-window_qkv_bias_yarn": (
        lambda: CausalLM(tiny_config("llama_like", sliding_window=3, qkv_bias=True, rope_scaling={
            "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16})),
        lambda: token_inputs(length=6, padding=2)),
}


def built_case(name):
    build, make_inputs = CASES[name]
    model, inputs = build(), make_inputs()
    return model, inputs, numpy_outputs(model, inputs)


def weight_values(model):
    return [np.asarray(w) for w in model.get_weights()]


@pytest.mark.parametrize("name", sorted(CASES))
def test_from_config_rebuilds_the_same_architecture(name):
    model, inputs, outputs = built_case(name)
    config = model.get_config()
    json.dumps(config)  # plain data, nothing pickled
    clone = type(model).from_config(config)
    assert clone.get_config() == config
    assert numpy_outputs(clone, inputs).shape == outputs.shape
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(numpy_outputs(clone, inputs), outputs)


@pytest.mark.parametrize("name", sorted(CASES))
def test_save_and_load_in_safe_mode_gives_identical_outputs(name, tmp_path):
    model, inputs, outputs = built_case(name)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")  # safe_mode=True by default
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(numpy_outputs(loaded, inputs), outputs)
    assert len(loaded.weights) == len(model.weights)
    assert len(loaded.trainable_weights) == len(model.trainable_weights)
    for saved, restored in zip(weight_values(model), weight_values(loaded)):
        np.testing.assert_array_equal(restored, saved)


def test_frozen_backbone_stays_frozen_after_loading(tmp_path):
    model, inputs, outputs = built_case("EncoderClassifier-cls")
    model.backbone.trainable = False
    assert len(model.trainable_weights) == 2  # the classifier's kernel and bias
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.backbone.trainable is False
    assert [w.path for w in loaded.trainable_weights] == [w.path for w in model.trainable_weights]


@pytest.mark.parametrize("name", ["CausalLM-untied", "Seq2Seq-transformer_like", "EncoderClassifier-mean"])
def test_mixed_precision_model_reloads_with_its_policy(name, tmp_path):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model, inputs, outputs = built_case(name)
    model.save(tmp_path / "m.keras")
    keras.mixed_precision.set_global_policy("float32")  # as in a fresh process
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    backbone = getattr(loaded, "backbone", loaded)
    assert loaded.dtype_policy.name == backbone.dtype_policy.name == "mixed_bfloat16"
    np.testing.assert_array_equal(numpy_outputs(loaded, inputs), outputs)


def test_tied_embedding_stays_tied_after_loading(tmp_path):
    model, inputs, _ = built_case("CausalLM-tied")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    embedding = loaded.backbone.embeddings.token_embedding
    assert loaded.lm_head.token_embedding is embedding
    embedding.embeddings.assign(embedding.embeddings * 2.0)  # the head must see the change
    assert not np.allclose(numpy_outputs(loaded, inputs), numpy_outputs(model, inputs))


# name -> labels for the inputs of CASES[name]
LABELS = {
    "EncoderClassifier-cls": lambda inputs: np.array([0, 2]),
    "MaskedLM": lambda inputs: np.where(inputs["token_ids"] % 3 == 0, inputs["token_ids"], -100),
    "CausalLM-untied": lambda inputs: np.roll(inputs["token_ids"], -1, axis=1),
    "Seq2Seq-transformer_like": lambda inputs: np.roll(inputs["decoder_token_ids"], -1, axis=1),
}


@pytest.mark.parametrize("name", sorted(LABELS))
def test_compiled_and_fitted_model_reloads_compiled_and_continues_training(name, tmp_path):
    model, inputs, _ = built_case(name)
    labels = LABELS[name](inputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    model.fit(inputs, labels, batch_size=2, epochs=3, verbose=0)
    assert int(model.optimizer.iterations) == 3
    before = model.evaluate(inputs, labels, verbose=0, return_dict=True)
    model.save(tmp_path / "m.keras")

    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.compiled
    assert int(loaded.optimizer.iterations) == 3
    assert loaded.optimizer.get_config()["learning_rate"] == pytest.approx(1e-3)
    for saved, restored in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(restored), np.asarray(saved))
    # Same loss and (padding-weighted) metrics: the loaded model went through our compile().
    after = loaded.evaluate(inputs, labels, verbose=0, return_dict=True)
    assert after.keys() == before.keys()
    np.testing.assert_allclose([after[k] for k in sorted(after)], [before[k] for k in sorted(before)],
                               rtol=1e-6)

    history = loaded.fit(inputs, labels, batch_size=2, epochs=2, verbose=0)
    assert int(loaded.optimizer.iterations) == 5
    assert np.isfinite(history.history["loss"]).all()


def test_a_model_saved_before_its_first_call_loads(tmp_path):
    model = CausalLM(tiny_config("gpt2_like"))  # never called: save() builds it first
    model.save(tmp_path / "unbuilt.keras")
    restored = keras.saving.load_model(tmp_path / "unbuilt.keras")
    inputs = token_inputs()
    np.testing.assert_array_equal(numpy_outputs(restored, inputs), numpy_outputs(model, inputs))
