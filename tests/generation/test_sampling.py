"""Token selection: greedy, temperature, top-k, top-p, seeds."""

import numpy as np
import pytest
import tensorflow as tf

from keras_transformers.generation import select_next_token


def draws(logits, n=2000, **kwargs):
    logits = tf.tile(tf.constant([logits], tf.float32), [n, 1])
    return select_next_token(logits, seed=tf.constant([4, 2]), greedy=False, **kwargs).numpy()


def test_greedy_is_argmax():
    logits = np.random.default_rng(0).normal(size=(5, 11)).astype(np.float32)
    np.testing.assert_array_equal(select_next_token(logits), logits.argmax(-1))


def test_top_k_1_is_greedy_whatever_the_temperature():
    logits = np.random.default_rng(1).normal(size=(64, 50)).astype(np.float32)
    sampled = select_next_token(logits, seed=[0, 1], greedy=False, temperature=7.0, top_k=1)
    np.testing.assert_array_equal(sampled, logits.argmax(-1))


def test_top_k_samples_only_among_the_k_largest():
    logits = np.log([0.05, 0.3, 0.1, 0.25, 0.3])
    assert set(draws(logits, top_k=2)) == {1, 4}


def test_top_p_never_samples_outside_the_nucleus_and_keeps_its_proportions():
    probabilities = np.array([0.02, 0.40, 0.05, 0.30, 0.15, 0.08])
    # Sorted: 0.40, 0.30, 0.15 | 0.08 ... The nucleus of 0.8 is {1, 3, 4} (mass 0.85):
    # token 4 is in because the mass before it (0.70) is still short of 0.8.
    samples = draws(np.log(probabilities), n=6000, top_p=0.8)
    assert set(samples) == {1, 3, 4}
    frequencies = np.bincount(samples, minlength=6)[[1, 3, 4]] / samples.size
    np.testing.assert_allclose(frequencies, np.array([0.40, 0.30, 0.15]) / 0.85, atol=0.03)


def test_a_tiny_top_p_is_greedy():
    assert set(draws(np.log([0.2, 0.5, 0.3]), top_p=1e-6)) == {1}


def test_top_k_and_top_p_together_take_the_nucleus_of_the_top_k():
    probabilities = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
    # top_k=3 renormalizes {0, 1, 2} to 0.40, 0.33, 0.27; the nucleus of 0.5 is {0, 1}.
    assert set(draws(np.log(probabilities), top_k=3, top_p=0.5)) == {0, 1}


def test_temperature_sharpens_and_flattens():
    logits = np.log([0.6, 0.4])
    cold = np.mean(draws(logits, n=4000, temperature=0.25) == 0)
    hot = np.mean(draws(logits, n=4000, temperature=4.0) == 0)
    # p0 ∝ 0.6^(1/T): T=0.25 → 0.835, T=4 → 0.525.
    assert cold == pytest.approx(0.6**4 / (0.6**4 + 0.4**4), abs=0.03)
    assert hot == pytest.approx(0.6**0.25 / (0.6**0.25 + 0.4**0.25), abs=0.03)


def test_same_seed_same_samples_other_seed_other_samples():
    logits = np.zeros((256, 100), np.float32)
    first = select_next_token(logits, seed=[1, 2], greedy=False).numpy()
    np.testing.assert_array_equal(first, select_next_token(logits, seed=[1, 2], greedy=False))
    assert (first != select_next_token(logits, seed=[1, 3], greedy=False).numpy()).any()
