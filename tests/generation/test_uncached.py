"""The uncached reference loop: greedy equals argmax recomputation past max_length, seeds, errors."""

import numpy as np
import pytest

from keras_transformers import CausalLM, TransformerConfig
from keras_transformers.generation import generate_uncached


@pytest.fixture(scope="module")
def lm():
    return CausalLM(TransformerConfig.from_preset("tiny", norm_first=True, max_length=8,
                                                  initializer_range=0.3))


def greedy_by_hand(lm, prompt, steps):
    sequence = np.array(prompt)
    for _ in range(steps):
        window = sequence[:, -lm.config.max_length:]
        logits = lm({"token_ids": window, "padding_mask": np.ones_like(window)}).numpy()
        sequence = np.concatenate([sequence, logits[:, -1].argmax(-1)[:, None]], axis=1)
    return sequence


def test_greedy_equals_full_recompute_including_the_sliding_window(lm):
    prompt = np.array([[3, 9, 12], [7, 1, 60]])
    # 3 prompt tokens + 10 new > max_length 8: the window slides.
    np.testing.assert_array_equal(generate_uncached(lm, prompt, 10, temperature=0),
                                  greedy_by_hand(lm, prompt, 10))


def test_top_k_1_equals_greedy(lm):
    prompt = np.array([[5, 6]])
    np.testing.assert_array_equal(generate_uncached(lm, prompt, 6, temperature=1.0, top_k=1, seed=3),
                                  generate_uncached(lm, prompt, 6, temperature=0))


def test_same_seed_same_samples_other_seed_other_samples(lm):
    prompt = np.array([[5, 6]])
    first = generate_uncached(lm, prompt, 12, temperature=5.0, seed=1)
    assert (first == generate_uncached(lm, prompt, 12, temperature=5.0, seed=1)).all()
    assert (first != generate_uncached(lm, prompt, 12, temperature=5.0, seed=2)).any()


@pytest.mark.parametrize("kwargs, message", [
    (dict(token_ids=[[64]]), r"outside \[0, vocab_size=64\)"),
    (dict(token_ids=[1, 2]), r"shape \(batch, prompt_len\)"),
    (dict(max_new_tokens=0), "`max_new_tokens` must be a positive integer, got 0"),
    (dict(token_ids=[[1, 2], [3]]), r"prompts of one length.*got lengths \[1, 2\]"),
    (dict(temperature=-1.0), "`temperature` must be >= 0"),
    (dict(top_k=65), r"`top_k` must be in \[1, vocab_size=64\], got 65"),
    (dict(top_p=0.0), r"`top_p` must be in \(0, 1\], got 0.0"),
])
def test_errors_name_the_argument(lm, kwargs, message):
    arguments = dict(token_ids=[[1, 2]], max_new_tokens=3, temperature=1.0, top_k=None)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        generate_uncached(lm, **arguments)
