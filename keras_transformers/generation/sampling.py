"""Reference text generation for CausalLM: the whole window is recomputed at every step.

This is the simple, obviously-correct loop (no key/value cache): each new token is sampled
from the logits at the last real position of a fixed-size window that slides over the
sequence once it exceeds the model's ``max_length``. The fixed window keeps one compiled
step function for the whole loop.
"""

import numpy as np
import tensorflow as tf


def _check_generate_args(token_ids, max_new_tokens, temperature, top_k, vocab_size):
    token_ids = np.asarray(token_ids)
    if token_ids.ndim != 2:
        raise ValueError(f"`token_ids` must have shape (batch, prompt_len), got shape {token_ids.shape}.")
    if token_ids.shape[0] == 0 or token_ids.shape[1] == 0:
        raise ValueError(f"`token_ids` must hold at least one prompt token per row, got shape {token_ids.shape}.")
    if not np.issubdtype(token_ids.dtype, np.integer):
        raise ValueError(f"`token_ids` must be integers, got dtype {token_ids.dtype}.")
    if token_ids.max() >= vocab_size or token_ids.min() < 0:
        raise ValueError(f"`token_ids` holds ids outside [0, vocab_size={vocab_size}).")
    if int(max_new_tokens) < 1:
        raise ValueError(f"`max_new_tokens` must be >= 1, got {max_new_tokens}.")
    if temperature < 0:
        raise ValueError(f"`temperature` must be >= 0 (0 = greedy), got {temperature}.")
    if top_k is not None and not 1 <= top_k <= vocab_size:
        raise ValueError(f"`top_k` must be in [1, vocab_size={vocab_size}], got {top_k}.")
    return token_ids.astype(np.int32)


def sample_next_token(logits, temperature, top_k, seed):
    """Sample ids from ``(batch, vocab)`` logits: greedy when ``temperature == 0``, else
    softmax(logits / temperature) restricted to the ``top_k`` largest when given."""
    if temperature == 0:
        return tf.argmax(logits, axis=-1, output_type=tf.int32)
    logits = logits / temperature
    if top_k is not None:
        kth_largest = tf.math.top_k(logits, k=top_k).values[:, -1:]
        logits = tf.where(logits < kth_largest, tf.float32.min, logits)
    return tf.random.stateless_categorical(logits, 1, seed=seed, dtype=tf.int32)[:, 0]


def generate(causal_lm, token_ids, max_new_tokens, temperature=1.0, top_k=None, seed=0):
    """Continue each prompt by ``max_new_tokens`` tokens.

    Args:
        causal_lm: a :class:`keras_transformers.CausalLM`.
        token_ids: ``(batch, prompt_len)`` int prompts, all of the same length.
        max_new_tokens: tokens to add.
        temperature: softmax temperature; 0 for greedy decoding.
        top_k: sample only among the ``top_k`` most likely tokens.
        seed: integer seed; the same seed gives the same samples.

    Returns:
        ``(batch, prompt_len + max_new_tokens)`` int32 NumPy array, prompts included.

    Example:
        >>> generate(lm, [[0]], max_new_tokens=20, temperature=0.8)
    """
    config = causal_lm.config
    sequence = _check_generate_args(token_ids, max_new_tokens, temperature, top_k, config.vocab_size)
    batch = sequence.shape[0]
    window = min(config.max_length, sequence.shape[1] + int(max_new_tokens))

    @tf.function(reduce_retracing=True)
    def step(window_ids, last_index, step_seed):
        inputs = {"token_ids": window_ids, "padding_mask": tf.ones_like(window_ids)}
        logits = tf.gather(causal_lm(inputs, training=False), last_index, axis=1)
        return sample_next_token(logits, temperature, top_k, step_seed)

    for i in range(int(max_new_tokens)):
        visible = sequence[:, -window:]
        length = visible.shape[1]
        window_ids = np.zeros((batch, window), np.int32)
        window_ids[:, :length] = visible  # right padding: causal attention never sees it
        next_ids = step(tf.constant(window_ids), tf.constant(length - 1), tf.constant([seed, i]))
        sequence = np.concatenate([sequence, next_ids.numpy()[:, None]], axis=1)
    return sequence
