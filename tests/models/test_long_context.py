"""Model-level long-context switches: chunked attention and rematerialized blocks change memory,
not results; both survive a ``.keras`` round trip."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_transformers.ops.attention as attention_ops
from keras_transformers import CausalLM, TransformerConfig
from tests.models.helpers import tiny_config, token_inputs

# Llama-like (RoPE, grouped KV heads) with residual / feed-forward dropout, so that remat must
# redraw the same dropout masks; no attention dropout, whose pattern differs between forms.
CONFIG = tiny_config("llama_like", dropout=0.1, attention_dropout=0.0)


def loss_and_gradients(config, variables, inputs):
    """Loss, logits and gradients of one XLA-compiled training-mode step of a CausalLM whose
    variables (weights and dropout seed states) are set to ``variables``."""
    model = CausalLM(config)
    model(inputs)
    for variable, value in zip(model.variables, variables, strict=True):
        variable.assign(value)

    @tf.function(jit_compile=True)
    def step(inputs):
        with tf.GradientTape() as tape:
            logits = model(inputs, training=True)
            loss = tf.reduce_mean(tf.square(logits))
        return loss, logits, tape.gradient(loss, model.trainable_variables)

    loss, logits, gradients = step(inputs)
    return loss.numpy(), logits.numpy(), [tf.convert_to_tensor(g).numpy() for g in gradients]


@pytest.fixture(scope="module")
def reference():
    keras.utils.set_random_seed(0)
    inputs = {key: tf.constant(value) for key, value in token_inputs(length=16, padding=5).items()}
    model = CausalLM(CONFIG)
    model(inputs)
    variables = [variable.numpy() for variable in model.variables]
    return inputs, variables, loss_and_gradients(CONFIG, variables, inputs)


def assert_same(actual, expected):
    (loss, logits, gradients), (loss_0, logits_0, gradients_0) = actual, expected
    np.testing.assert_allclose(loss, loss_0, rtol=1e-5)
    np.testing.assert_allclose(logits, logits_0, atol=1e-5)
    for g, g_0 in zip(gradients, gradients_0):
        np.testing.assert_allclose(g, g_0, atol=1e-5)


def test_chunked_attention_gives_the_exact_logits_loss_and_gradients(reference, monkeypatch):
    inputs, weights, expected = reference
    # Tiles of 8 on a length of 16: two by two tiles, padding and causal masks across them.
    monkeypatch.setattr(attention_ops, "DEFAULT_QUERY_BLOCK", 8)
    monkeypatch.setattr(attention_ops, "DEFAULT_KEY_BLOCK", 8)
    assert_same(loss_and_gradients(CONFIG.replace(attention_implementation="chunked"), weights, inputs),
                expected)


def test_remat_gives_the_same_gradients_with_dropout(reference):
    inputs, weights, expected = reference
    assert_same(loss_and_gradients(CONFIG.replace(remat=True), weights, inputs), expected)


def test_fit_saves_and_reloads_with_chunked_attention_and_remat(tmp_path):
    config = tiny_config("gpt2_like", num_layers=1, attention_implementation="chunked", remat=True)
    model = CausalLM(config)
    model.compile(optimizer="adam")
    inputs = token_inputs(length=8)
    history = model.fit(inputs, inputs["token_ids"], batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.backbone.config.attention_implementation == "chunked" and loaded.backbone.config.remat
    attention = loaded.backbone.blocks[0].self_attention
    assert attention.attention_implementation == "chunked"
    np.testing.assert_allclose(loaded.predict(inputs, verbose=0), model.predict(inputs, verbose=0), atol=1e-6)


@pytest.mark.parametrize("changes, message", [
    ({"attention_implementation": "flash"}, "`attention_implementation` must be one of"),
    ({"remat": "yes"}, "`remat` must be True or False"),
])
def test_config_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        TransformerConfig.from_preset("tiny", **changes)
