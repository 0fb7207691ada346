"""RMSNorm against x / sqrt(mean(x²) + eps) · g, in float32 under mixed precision; make_norm."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transformers.layers import RMSNorm, make_norm
from tests.layers.layer_checks import assert_serialization_round_trip, randomize_weights


def reference_rms_norm(x, scale, epsilon):
    x = np.asarray(x, np.float64)
    return x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + epsilon) * scale


def built_rms_norm(shape, **kwargs):
    layer = RMSNorm(**kwargs)
    layer.build(shape)
    return randomize_weights(layer)


@pytest.mark.parametrize("epsilon", [1e-6, 0.5])
def test_rms_norm_matches_the_formula(epsilon):
    x = np.random.normal(scale=0.5, size=(2, 3, 8)).astype(np.float32)
    layer = built_rms_norm(x.shape, epsilon=epsilon)
    expected = reference_rms_norm(x, layer.scale.numpy(), epsilon)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-6)


def test_rms_norm_computes_in_float32_and_returns_bfloat16_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    x = np.random.normal(scale=3.0, size=(2, 3, 64)).astype(np.float32)
    layer = built_rms_norm(x.shape)
    assert layer.scale.dtype == "float32"
    outputs = layer(x)
    assert outputs.dtype == tf.bfloat16
    # Float32 maths leaves one rounding, the final cast: the result is the bf16 of the exact value.
    x_bf16 = tf.cast(tf.cast(x, tf.bfloat16), tf.float32).numpy()
    expected = tf.cast(reference_rms_norm(x_bf16, layer.scale.numpy(), 1e-6), tf.bfloat16)
    np.testing.assert_array_equal(tf.cast(outputs, tf.float32), tf.cast(expected, tf.float32))


@pytest.mark.parametrize("norm_type, layer_type", [
    ("layer_norm", keras.layers.LayerNormalization), ("rms_norm", RMSNorm)])
def test_make_norm_picks_the_norm_by_name(norm_type, layer_type):
    norm = make_norm(norm_type, 1e-3, name="norm")
    assert type(norm) is layer_type and norm.epsilon == 1e-3 and norm.name == "norm"


def test_make_norm_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"`norm_type` must be one of .*got 'batch_norm'"):
        make_norm("batch_norm", 1e-3, name="norm")


def test_serialization_round_trip(tmp_path):
    layer = built_rms_norm((2, 3, 8), epsilon=1e-3, name="layer")
    inputs = {"x": np.random.default_rng(0).normal(size=(2, 3, 8)).astype(np.float32)}
    assert_serialization_round_trip(layer, inputs, tmp_path)
