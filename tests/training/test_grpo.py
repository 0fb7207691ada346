"""GRPO (issue 18): group advantages and the clipped, KL-penalised loss against their formulas,
and a tiny LM learning to say a rewarded token through sampling and ``fit``."""

import keras
import numpy as np
import tensorflow as tf

import keras_transformers as kt
from keras_transformers.training.grpo import GRPO, group_advantages, grpo_loss

VOCAB, REWARDED = 12, 7


def test_group_advantages_are_normalized_within_each_group():
    rewards = [1.0, 0.0, 0.0, 1.0, 5.0, 5.0, 5.0, 5.0]
    got = group_advantages(rewards, group_size=4)
    first = np.array([1.0, 0.0, 0.0, 1.0])
    expected = (first - first.mean()) / (first.std(ddof=1) + 1e-4)
    np.testing.assert_allclose(got[:4], expected, rtol=1e-6)
    np.testing.assert_array_equal(got[4:], 0.0)  # all equal: no signal


def test_the_loss_equals_its_formula():
    rng = np.random.default_rng(0)
    log_probs, old, reference = (np.log(rng.uniform(0.05, 0.9, (3, 5))) for _ in range(3))
    advantages = np.array([1.5, -0.5, 0.2])
    counted = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1], [1, 0, 0, 0, 0]], np.float64)
    loss, kl = grpo_loss(*(tf.constant(a, tf.float32) for a in (log_probs, old, reference, advantages, counted)),
                         epsilon=0.2, beta=0.1)
    ratio = np.exp(log_probs - old)
    surrogate = np.minimum(ratio * advantages[:, None], np.clip(ratio, 0.8, 1.2) * advantages[:, None])
    k3 = np.exp(reference - log_probs) - (reference - log_probs) - 1
    expected = -np.mean(((surrogate - 0.1 * k3) * counted).sum(1) / counted.sum(1))
    assert abs(float(loss) - expected) < 1e-5
    assert abs(float(kl) - (k3 * counted).sum() / counted.sum()) < 1e-5


def test_a_tiny_lm_learns_the_rewarded_token():
    keras.utils.set_random_seed(0)
    policy = kt.CausalLM(kt.TransformerConfig.from_preset("tiny", vocab_size=VOCAB, num_layers=1, dropout=0.0,
                                                          attention_dropout=0.0, max_length=16))
    policy.build()

    def reward(prompts, completions):  # the share of the completion's tokens that are REWARDED
        return [sum(t == REWARDED for t in c) / max(len(c), 1) for c in completions]

    grpo = GRPO(policy, reward, group_size=4, max_new_tokens=4, beta=0.01)
    grpo.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = grpo.sample([[1, 2], [3]] * 4, seed=100)
    assert before["token_ids"].shape == (32, 16) and before["old_log_probs"].shape == (32, 15)
    np.testing.assert_allclose(before["old_log_probs"], before["reference_log_probs"], atol=1e-6)  # not trained
    history = grpo.fit([[1, 2], [3], [4, 5], [6]], iterations=12, prompts_per_iteration=4, verbose=0)
    after = grpo.sample([[1, 2], [3]] * 4, seed=100)
    assert after["rewards"].mean() > before["rewards"].mean() + 0.3, (before["rewards"].mean(), history)
    assert history[-1]["kl"] > 0.0
