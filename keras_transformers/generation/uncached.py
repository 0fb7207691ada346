"""Generation without a cache: the whole window is recomputed at every step.

The simple, obviously-correct loop, and the reference the cached :func:`generate` is tested
against. It also goes where a cache cannot: past the model's ``max_length``, by sliding a
fixed-size window over the sequence (learned positions forbid that to a cache, whose
positions only grow). The fixed window keeps one compiled step function for the whole loop.
"""

import numpy as np
import tensorflow as tf

from keras_transformers.generation.generate import check_ids, check_settings, pad_prompts
from keras_transformers.generation.sampling import select_next_token


def generate_uncached(causal_lm, token_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                      seed=0):
    """Continue each prompt by ``max_new_tokens`` tokens, recomputing the window each step.

    Args:
        causal_lm: a :class:`keras_transformers.CausalLM`.
        token_ids: ``(batch, prompt_len)`` int prompts, all of the same length.
        max_new_tokens: tokens to add; the total may exceed the model's ``max_length``.
        temperature: softmax temperature; 0 for greedy decoding.
        top_k: sample only among the ``top_k`` most likely tokens.
        top_p: sample only from the nucleus of probability ``top_p``.
        seed: integer seed; the same seed gives the same samples.

    Returns:
        ``(batch, prompt_len + max_new_tokens)`` int32 NumPy array, prompts included.

    Example:
        >>> generate_uncached(lm, [[0]], max_new_tokens=500, temperature=0.8)
    """
    config = causal_lm.config
    check_settings(config.vocab_size, max_new_tokens, temperature, top_k, top_p, num_beams=1)
    sequence, lengths = pad_prompts(token_ids)
    check_ids(sequence, lengths, config.vocab_size, "token_ids")
    if (lengths != sequence.shape[1]).any():
        raise ValueError("generate_uncached takes prompts of one length; CausalLM.generate takes "
                         f"prompts of different lengths (got lengths {sorted(set(lengths.tolist()))}).")
    sequence = sequence.astype(np.int32)
    batch = sequence.shape[0]
    window = min(config.max_length, sequence.shape[1] + int(max_new_tokens))

    @tf.function(reduce_retracing=True)
    def step(window_ids, last_index, step_seed):
        inputs = {"token_ids": window_ids, "padding_mask": tf.ones_like(window_ids)}
        logits = tf.gather(causal_lm(inputs, training=False), last_index, axis=1)
        return select_next_token(logits, step_seed, greedy=temperature == 0, temperature=temperature,
                                 top_k=top_k, top_p=top_p)

    for i in range(int(max_new_tokens)):
        visible = sequence[:, -window:]
        length = visible.shape[1]
        window_ids = np.zeros((batch, window), np.int32)
        window_ids[:, :length] = visible  # right padding: causal attention never sees it
        next_ids = step(tf.constant(window_ids), tf.constant(length - 1), tf.constant([seed, i]))
        sequence = np.concatenate([sequence, next_ids.numpy()[:, None]], axis=1)
    return sequence
