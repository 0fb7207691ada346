"""The label-smoothed sparse cross-entropy against Keras' one-hot loss and the formula."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transformers.training import SparseCategoricalCrossentropy


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.3])
def test_equals_keras_categorical_crossentropy_on_one_hot_labels(label_smoothing):
    labels = np.array([[1, 4, 0], [3, 3, 2]])
    logits = np.random.randn(2, 3, 5).astype("float32")
    ours = SparseCategoricalCrossentropy(label_smoothing, reduction="none")(labels, logits)
    reference = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=label_smoothing, reduction="none")(tf.one_hot(labels, 5), logits)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_formula_on_one_token():
    logits = np.array([[2.0, 0.5, -1.0]], "float32")
    log_p = logits[0] - np.log(np.exp(logits[0]).sum())
    expected = -(0.9 * log_p[2] + 0.1 * log_p.mean())
    loss = SparseCategoricalCrossentropy(0.1, reduction="none")(np.array([2]), logits)
    np.testing.assert_allclose(loss, [expected], rtol=1e-6)


def test_mean_with_sample_weight_averages_over_counted_tokens_only():
    labels = np.array([[1, 2, 3]])
    logits = np.random.randn(1, 3, 4).astype("float32")
    per_token = SparseCategoricalCrossentropy(reduction="none")(labels, logits).numpy()
    weights = np.array([[1.0, 1.0, 0.0]])
    loss = SparseCategoricalCrossentropy()(labels, logits, sample_weight=weights)
    np.testing.assert_allclose(loss, per_token[0, :2].mean(), rtol=1e-6)


def test_probabilities_input():
    probabilities = np.array([[0.2, 0.8]], "float32")
    loss = SparseCategoricalCrossentropy(from_logits=False, reduction="none")(np.array([1]), probabilities)
    np.testing.assert_allclose(loss, [-np.log(0.8)], rtol=1e-6)


def test_rejects_smoothing_out_of_range():
    with pytest.raises(ValueError, match=r"`label_smoothing` must be in \[0, 1\), got 1.5"):
        SparseCategoricalCrossentropy(label_smoothing=1.5)


def test_config_round_trip():
    loss = SparseCategoricalCrossentropy(label_smoothing=0.2)
    clone = SparseCategoricalCrossentropy.from_config(loss.get_config())
    assert clone.label_smoothing == 0.2 and clone.reduction == "mean_with_sample_weight"
