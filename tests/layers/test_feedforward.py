"""FeedForward (relu | gelu | gelu_approximate | swiglu | geglu) against NumPy formulas of its weights."""

import math

import numpy as np
import pytest

from keras_transformers.layers import FeedForward
from tests.layers.layer_checks import assert_serialization_round_trip, randomize_weights


def dense(layer, x):
    return x @ layer.kernel.numpy() + layer.bias.numpy()


def relu(x):
    return np.maximum(x, 0.0)


def gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def reference_feedforward(layer, x):
    if layer.activation == "swiglu":
        hidden = silu(dense(layer.gate_proj, x)) * dense(layer.up_proj, x)
    elif layer.activation == "geglu":  # T5 v1.1's gated-gelu: transformers' gelu_new (tanh) gate
        hidden = gelu_tanh(dense(layer.gate_proj, x)) * dense(layer.up_proj, x)
    else:
        activation = {"relu": relu, "gelu": gelu, "gelu_approximate": gelu_tanh}[layer.activation]
        hidden = activation(dense(layer.up_proj, x))
    return dense(layer.down_proj, hidden)


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_approximate", "swiglu", "geglu"])
def test_feedforward_matches_the_formula(activation):
    x = np.random.normal(size=(2, 3, 6)).astype(np.float32)
    layer = FeedForward(16, activation=activation)
    layer.build(x.shape)
    randomize_weights(layer, stddev=1.0)
    np.testing.assert_allclose(layer(x), reference_feedforward(layer, x), rtol=1e-4, atol=1e-5)


def test_exact_and_tanh_gelu_differ():
    x = np.random.normal(size=(2, 3, 6)).astype(np.float32)
    exact, approximate = (FeedForward(16, activation=name) for name in ("gelu", "gelu_approximate"))
    for layer in (exact, approximate):
        layer.build(x.shape)
        randomize_weights(layer, stddev=1.0)
    assert not np.allclose(exact(x), approximate(x), atol=1e-5)


def test_swiglu_without_bias_has_three_kernels_only():
    layer = FeedForward(16, activation="swiglu", use_bias=False)
    layer.build((2, 3, 6))
    assert sorted(tuple(w.shape) for w in layer.trainable_weights) == [(6, 16), (6, 16), (16, 6)]


def test_dropout_only_when_training():
    x = np.random.normal(size=(2, 3, 6)).astype(np.float32)
    layer = FeedForward(16, activation="relu", dropout=0.5)
    layer.build(x.shape)
    randomize_weights(layer, stddev=1.0)
    np.testing.assert_allclose(layer(x, training=False), reference_feedforward(layer, x),
                               rtol=1e-4, atol=1e-5)
    assert not np.allclose(layer(x, training=True), reference_feedforward(layer, x), atol=1e-3)


def test_invalid_activation_raises():
    with pytest.raises(ValueError, match=r"`activation` must be one of .*'swiglu'.*got 'tanh'"):
        FeedForward(16, activation="tanh")


@pytest.mark.parametrize("activation", ["gelu", "swiglu"])
def test_serialization_round_trip(activation, tmp_path):
    layer = FeedForward(16, activation=activation, dropout=0.1, use_bias=activation != "swiglu",
                        kernel_initializer="he_normal", name="layer")
    inputs = {"x": np.random.default_rng(0).normal(size=(2, 3, 6)).astype(np.float32)}
    assert_serialization_round_trip(layer, inputs, tmp_path)
