"""Shared checks for the layer tests: config and `.keras` saving round trips, weight randomizing."""

import keras
import numpy as np
import tensorflow as tf


def randomize_weights(layer, stddev=0.3, seed=0):
    """Give every trainable weight (biases and norm scales included) random normal values."""
    rng = np.random.default_rng(seed)
    for weight in layer.trainable_weights:
        weight.assign(rng.normal(scale=stddev, size=weight.shape).astype(weight.dtype))
    return layer


def assert_serialization_round_trip(layer, inputs, tmp_path, **call_kwargs):
    """``get_config`` → ``from_config`` gives an equal config, and a ``.keras`` save/load
    (safe mode) of a functional model around ``layer`` gives identical outputs.

    ``inputs`` maps call-argument names to NumPy arrays (batch first); the first is passed
    positionally, the rest as keywords, and ``call_kwargs`` as constant keywords.
    """
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config

    symbolic = {name: keras.Input(shape=value.shape[1:], dtype=str(value.dtype), name=name)
                for name, value in inputs.items()}
    first, *rest = symbolic
    outputs = layer(symbolic[first], **{name: symbolic[name] for name in rest}, **call_kwargs)
    model = keras.Model(symbolic, outputs)
    expected = model(inputs)

    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.get_layer(layer.name)) is type(layer)
    assert loaded.get_layer(layer.name).get_config() == config
    actual = loaded(inputs)
    tf.nest.assert_same_structure(expected, actual, check_types=False)
    for want, got in zip(tf.nest.flatten(expected), tf.nest.flatten(actual)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
