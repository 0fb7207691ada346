"""DPO (issue 18): the loss against its formula on log-probabilities computed in NumPy, the
gradient's vanishing with β, a synthetic preference learnt with ``fit`` under the default
(XLA) compile, the reference frozen, LoRA-DPO training only the adapters, text in."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_transformers as kt
from keras_transformers.preprocessing import CausalLMPreprocessor
from keras_transformers.tokenizers import byte_tokenizer
from keras_transformers.training.dpo import DPO
from keras_transformers.training.reference import frozen_copy
from keras_transformers.training.lora import enable_lora, lora_variables
from keras_transformers.training.preferences import completion_log_probs, pack_preferences

VOCAB, A, B = 16, 3, 4


def tiny_lm(seed=0, **changes):
    keras.utils.set_random_seed(seed)
    config = kt.TransformerConfig.from_preset("tiny", vocab_size=VOCAB, num_layers=1, dropout=0.0,
                                              attention_dropout=0.0, max_length=16, **changes)
    model = kt.CausalLM(config)
    model.build()
    return model


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def numpy_log_prob(model, ids, padding, completion):
    """Σ over completion tokens t >= 1 of log p(x_t | x_<t), from the model's logits."""
    logits = model.predict({"token_ids": ids, "padding_mask": padding}, verbose=0).astype(np.float64)
    lp = log_softmax(logits)
    total = np.zeros(len(ids))
    for row in range(len(ids)):
        for t in range(1, ids.shape[1]):
            if completion[row, t] and padding[row, t]:
                total[row] += lp[row, t - 1, ids[row, t]]
    return total


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(0)
    prompts = [list(rng.integers(5, VOCAB, rng.integers(1, 4))) for _ in range(32)]
    middles = rng.integers(5, VOCAB, 32)
    chosen = [[int(m), A] for m in middles]
    rejected = [[int(m), B] for m in middles]
    return prompts, chosen, rejected, pack_preferences(prompts, chosen, rejected, sequence_length=8)


def test_packing_masks_the_prompt_and_the_padding():
    packed = pack_preferences([[5, 6]], [[7, 8, 9]], [[10]], sequence_length=6)
    assert packed["chosen_token_ids"].tolist() == [[5, 6, 7, 8, 9, 0]]
    assert packed["chosen_padding_mask"].tolist() == [[1, 1, 1, 1, 1, 0]]
    assert packed["chosen_completion_mask"].tolist() == [[0, 0, 1, 1, 1, 0]]
    assert packed["rejected_completion_mask"].tolist() == [[0, 0, 1, 0, 0, 0]]
    with pytest.raises(ValueError, match=r"Example 0: the prompt has 6 tokens.*sequence_length=6"):
        pack_preferences([[1] * 6], [[2]], [[3]], sequence_length=6)
    with pytest.raises(ValueError, match=r"rejected\[0\] is empty"):
        pack_preferences([[1]], [[2]], [[]], sequence_length=6)


@pytest.mark.parametrize("loss_type,smoothing", [("sigmoid", 0.0), ("sigmoid", 0.2), ("ipo", 0.0)])
def test_the_loss_equals_its_formula_on_numpy_log_probs(pairs, loss_type, smoothing):
    *_, x = pairs
    policy, reference = tiny_lm(0), tiny_lm(1)  # another reference: the log-ratios are not 0
    dpo = DPO(policy, reference=reference, beta=0.5, loss_type=loss_type, label_smoothing=smoothing)
    got = float(dpo.compute_loss(x, y_pred=dpo(x)))
    logp = {}
    for side in ("chosen", "rejected"):
        args = [x[f"{side}_{k}"] for k in ("token_ids", "padding_mask", "completion_mask")]
        logp[side] = (numpy_log_prob(policy, *args) - numpy_log_prob(reference, *args))
        if loss_type == "ipo":
            logp[side] /= (x[f"{side}_completion_mask"][:, 1:] * x[f"{side}_padding_mask"][:, 1:]).sum(1)
    h = logp["chosen"] - logp["rejected"]
    if loss_type == "ipo":
        expected = np.mean((h - 1 / (2 * 0.5)) ** 2)
    else:
        log_sigmoid = lambda z: -np.log1p(np.exp(-z))  # noqa: E731
        expected = np.mean(-(1 - smoothing) * log_sigmoid(0.5 * h) - smoothing * log_sigmoid(-0.5 * h))
    assert abs(got - expected) < 1e-5 * max(1.0, abs(expected)), (got, expected)


def test_completion_log_probs_count_only_the_completion(pairs):
    *_, x = pairs
    model = tiny_lm(0)
    args = [x[f"chosen_{k}"] for k in ("token_ids", "padding_mask", "completion_mask")]
    summed, _, counted = completion_log_probs(model, *args)
    np.testing.assert_allclose(summed.numpy(), numpy_log_prob(model, *args), atol=1e-5)
    assert counted.numpy().sum() == 2 * len(args[0])  # [middle, A] of every row


def test_the_gradient_vanishes_as_beta_goes_to_zero(pairs):
    *_, x = pairs

    def gradient_norm(beta):
        policy = tiny_lm(0)
        dpo = DPO(policy, reference=tiny_lm(1), beta=beta)
        with tf.GradientTape() as tape:
            loss = dpo.compute_loss(x, y_pred=dpo(x, training=True))
        return float(tf.linalg.global_norm(tape.gradient(loss, policy.trainable_variables)))

    assert gradient_norm(1e-7) < 1e-6 * gradient_norm(1.0)


def test_fit_learns_a_synthetic_preference_and_leaves_the_reference_frozen(pairs):
    *_, x = pairs
    policy = tiny_lm(0)
    dpo = DPO(policy, beta=0.5)
    reference_before = [w.numpy().copy() for w in dpo.reference.weights]
    args = [x[f"chosen_{k}"] for k in ("token_ids", "padding_mask", "completion_mask")]
    chosen_before = numpy_log_prob(policy, *args).mean()
    dpo.compile(optimizer=keras.optimizers.Adam(3e-3))  # the default: XLA on
    assert dpo.jit_compile
    history = dpo.fit(x, batch_size=16, epochs=15, verbose=0).history
    assert history["reward_accuracy"][-1] > 0.95, history["reward_accuracy"]
    assert history["reward_margin"][-1] > history["reward_margin"][0]
    assert history["kl"][-1] > 0.0
    assert numpy_log_prob(policy, *args).mean() > chosen_before  # the chosen completions rose
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(reference_before, dpo.reference.weights))
    # Under XLA an out-of-range id would be clamped: it is refused before the compiled step.
    bad = {**x, "chosen_token_ids": np.where(x["chosen_token_ids"] == A, 10**6, x["chosen_token_ids"])}
    with pytest.raises(Exception, match=r"chosen_token_ids|token_ids.*1000000"):
        dpo.fit(bad, batch_size=16, epochs=1, verbose=0)


def test_lora_dpo_trains_only_the_adapters_and_its_reference_is_the_base(pairs):
    *_, x = pairs
    policy = tiny_lm(0)
    base = frozen_copy(policy)
    enable_lora(policy, rank=2)
    dpo = DPO(policy, beta=0.5)
    assert dpo.adapters_as_reference and dpo.reference is None  # no second copy
    adapters = {id(v) for v in lora_variables(policy).values()}
    assert {id(v) for v in dpo.trainable_variables} <= adapters | {id(v) for v in policy.trainable_variables}
    frozen_before = {v.path: v.numpy().copy() for v in policy.weights if id(v) not in adapters}
    dpo.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)  # (XLA: the test above)
    dpo.fit(x, batch_size=16, epochs=3, verbose=0)
    changed = [path for path, value in frozen_before.items()
               if not np.array_equal(value, next(v for v in policy.weights if v.path == path).numpy())]
    assert not [p for p in changed if "lora" not in p and "head" not in p], changed
    args = [x[f"chosen_{k}"] for k in ("token_ids", "padding_mask", "completion_mask")]
    reference = dpo._reference_log_probs(*[tf.concat([a, a], 0) for a in args])[0].numpy()[:len(args[0])]
    np.testing.assert_allclose(reference, numpy_log_prob(base, *args), atol=1e-4)


def test_precomputed_reference_log_probs_give_the_same_loss(pairs):
    *_, x = pairs
    dpo = DPO(tiny_lm(0), reference=tiny_lm(1), beta=0.5)
    precomputed = dpo.with_reference_log_probs(x, batch_size=8)
    assert float(dpo.compute_loss(precomputed, y_pred=dpo(precomputed))) == pytest.approx(
        float(dpo.compute_loss(x, y_pred=dpo(x))), abs=1e-5)


def test_text_in_with_the_policys_preprocessor():
    keras.utils.set_random_seed(0)
    config = kt.TransformerConfig.from_preset("tiny", vocab_size=256, num_layers=1, max_length=32)
    policy = kt.CausalLM(config, preprocessor=CausalLMPreprocessor(byte_tokenizer(), 32, start_id=2, end_id=3))
    dpo = DPO(policy, beta=0.1)
    dpo.compile(optimizer="adam")
    history = dpo.fit({"prompt": ["the film was", "it is"] * 4, "chosen": [" great", " good"] * 4,
                       "rejected": [" awful", " bad"] * 4}, batch_size=4, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0]) and 0.0 <= history["reward_accuracy"][0] <= 1.0
    with pytest.raises(ValueError, match="`loss_type` must be one of"):
        DPO(policy, loss_type="kto")
    with pytest.raises(ValueError, match="DPO inputs need rejected_token_ids"):
        dpo.validate_inputs({k: v for k, v in pack_preferences([[1]], [[2]], [[3]], 4).items()
                             if not k.startswith("rejected_token")})
