"""MixtureOfExperts (issue 17): the dense computation equals the sparse formula token by token,
the router's weights are Mixtral's renormalized top-k, the load-balancing loss its formula."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transformers.layers.moe import MixtureOfExperts

HIDDEN, INNER, EXPERTS, K = 8, 12, 4, 2


@pytest.fixture(scope="module")
def moe():
    keras.utils.set_random_seed(0)
    layer = MixtureOfExperts(INNER, num_experts=EXPERTS, experts_per_token=K, router_aux_loss_weight=0.5)
    layer.build((None, None, HIDDEN))
    return layer


def silu(x):
    return x / (1 + np.exp(-x))


def test_outputs_equal_the_sparse_formula_token_by_token(moe):
    x = np.random.default_rng(0).normal(size=(2, 3, HIDDEN)).astype("float32")
    router, gate, up, down = (w.numpy().astype(np.float64) for w in
                              (moe.router_kernel, moe.gate_kernel, moe.up_kernel, moe.down_kernel))
    expected = np.zeros((2, 3, HIDDEN))
    for b in range(2):
        for s in range(3):
            token = x[b, s].astype(np.float64)
            logits = token @ router
            p = np.exp(logits - logits.max())
            p /= p.sum()
            top = np.argsort(-p)[:K]
            for e in top:
                expected[b, s] += p[e] / p[top].sum() * ((silu(token @ gate[e]) * (token @ up[e])) @ down[e])
    np.testing.assert_allclose(moe(x).numpy(), expected, atol=1e-5)
    _, weights, _ = moe.routing(x)
    np.testing.assert_allclose(weights.numpy().sum(-1), 1.0, atol=1e-6)
    assert ((weights.numpy() > 0).sum(-1) == K).all()


def test_the_load_balancing_loss_is_its_formula_and_added_only_in_training(moe):
    x = np.random.default_rng(1).normal(size=(2, 5, HIDDEN)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    probabilities, _, chosen = (t.numpy() for t in moe.routing(x))
    counted = mask.astype(bool)
    fraction = chosen[counted].sum(axis=(0, 1)) / counted.sum()
    expected = EXPERTS * np.sum(fraction * probabilities[counted].mean(0))
    got = float(moe.load_balancing_loss(tf.constant(probabilities), tf.constant(chosen), mask))
    assert abs(got - expected) < 1e-6
    moe(x, padding_mask=mask, training=False)
    assert not moe.losses
    moe(x, padding_mask=mask, training=True)
    assert len(moe.losses) == 1 and abs(float(moe.losses[0]) - 0.5 * expected) < 1e-6


def test_uniform_routing_gives_an_auxiliary_loss_of_k():
    layer = MixtureOfExperts(INNER, num_experts=EXPERTS, experts_per_token=K, kernel_initializer="zeros")
    layer.build((None, None, HIDDEN))
    probabilities, _, chosen = layer.routing(tf.ones([1, 3, HIDDEN]))
    assert float(layer.load_balancing_loss(probabilities, chosen)) == pytest.approx(K)


def test_config_round_trip_and_bad_k(moe):
    clone = MixtureOfExperts.from_config(moe.get_config())
    assert clone.get_config() == moe.get_config()
    with pytest.raises(ValueError, match=r"`experts_per_token` must be in \[1, num_experts=4\], got 5"):
        MixtureOfExperts(INNER, num_experts=4, experts_per_token=5)
