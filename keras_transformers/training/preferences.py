"""Preference data for alignment: ``(prompt, completion)`` pairs packed into the id tensors
that :class:`~keras_transformers.training.dpo.DPO` trains on, and the log-probability of a
completion under a causal LM.

A packed sequence is ``prompt + completion`` (right-padded to ``sequence_length``) with two
masks: ``padding_mask`` (1 = a real token) and ``completion_mask`` (1 = a completion token,
whose log-probability counts). The prompt's tokens and padding never count.

Example:
    >>> batch = pack_preferences([[5, 6]], [[7, 8]], [[9]], sequence_length=6)
    >>> batch["chosen_token_ids"].tolist(), batch["chosen_completion_mask"].tolist()
    ([[5, 6, 7, 8, 0, 0]], [[0, 0, 1, 1, 0, 0]])
"""

import numpy as np
import tensorflow as tf

SIDES = ("chosen", "rejected")


def pack_completions(prompts, completions, sequence_length, pad_id=0, name="completions"):
    """Pack each ``prompt + completion`` (lists of ids) into ``(n, sequence_length)`` int32
    arrays: ``token_ids``, ``padding_mask`` and ``completion_mask``.

    A sequence longer than ``sequence_length`` loses the end of its completion; a prompt that
    leaves no room for a single completion token is a ``ValueError`` naming the example.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} {name}; they must pair up.")
    count = len(prompts)
    token_ids = np.full((count, sequence_length), pad_id, np.int32)
    padding_mask = np.zeros((count, sequence_length), np.int32)
    completion_mask = np.zeros((count, sequence_length), np.int32)
    for row, (prompt, completion) in enumerate(zip(prompts, completions)):
        prompt, completion = [int(i) for i in prompt], [int(i) for i in completion]
        if not completion:
            raise ValueError(f"{name}[{row}] is empty: a completion needs at least one token.")
        if len(prompt) >= sequence_length:
            raise ValueError(f"Example {row}: the prompt has {len(prompt)} tokens, which leaves no room for "
                             f"its completion within sequence_length={sequence_length}.")
        sequence = (prompt + completion)[:sequence_length]
        token_ids[row, :len(sequence)] = sequence
        padding_mask[row, :len(sequence)] = 1
        completion_mask[row, len(prompt):len(sequence)] = 1
    return {"token_ids": token_ids, "padding_mask": padding_mask, "completion_mask": completion_mask}


def pack_preferences(prompts, chosen, rejected, sequence_length, pad_id=0):
    """The DPO inputs of ``(prompt, chosen, rejected)`` id lists: a dict of ``(n,
    sequence_length)`` int32 arrays, ``chosen_token_ids``, ``chosen_padding_mask``,
    ``chosen_completion_mask`` and the same for ``rejected_``."""
    packed = {}
    for side, completions in zip(SIDES, (chosen, rejected)):
        for key, value in pack_completions(prompts, completions, sequence_length, pad_id, side).items():
            packed[f"{side}_{key}"] = value
    return packed


def tokenize_preferences(preprocessor, prompts, chosen, rejected, sequence_length=None):
    """Tokenize ``(prompt, chosen, rejected)`` strings with a ``CausalLMPreprocessor``'s
    tokenizer, as it frames a text (its ``start_id`` before the prompt, its ``end_id`` after
    each completion, when set) and pack them (:func:`pack_preferences`)."""
    tokenizer = preprocessor.tokenizer

    def ids(texts):
        rows = tokenizer(tf.constant([str(t) for t in texts]))
        return [[int(i) for i in row] for row in (rows.to_list() if hasattr(rows, "to_list") else rows)]

    end = [preprocessor.end_id] if preprocessor.end_id is not None else []
    prompt_ids = preprocessor.prompt_ids([str(t) for t in prompts])  # [start] + tokens, as generate_text
    chosen_ids, rejected_ids = ([row + end for row in ids(texts)] for texts in (chosen, rejected))
    length = sequence_length or preprocessor.sequence_length
    return pack_preferences(prompt_ids, chosen_ids, rejected_ids, length, preprocessor.pad_id)


def token_log_probs(model, token_ids, padding_mask, training=False):
    """``log p(x_t | x_<t)`` of every token ``t >= 1`` under the causal LM ``model``.

    Returns:
        ``(gathered, log_probs)``: ``(batch, seq - 1)`` float32, the log-probability of token
        ``t + 1`` at column ``t``; and the ``(batch, seq - 1, vocab)`` float32 log-softmax of the
        logits at positions ``0..seq-2``.
    """
    logits = model({"token_ids": token_ids, "padding_mask": padding_mask}, training=training)
    log_probs = tf.nn.log_softmax(tf.cast(logits[:, :-1], tf.float32), axis=-1)
    gathered = tf.gather(log_probs, tf.cast(token_ids[:, 1:], tf.int32), axis=-1, batch_dims=2)
    return gathered, log_probs


def counted_tokens(padding_mask, completion_mask):
    """``(batch, seq - 1)`` float32 weights aligned with :func:`token_log_probs`: 1 where token
    ``t + 1`` is a real completion token."""
    return tf.cast(completion_mask[:, 1:], tf.float32) * tf.cast(padding_mask[:, 1:], tf.float32)


def completion_log_probs(model, token_ids, padding_mask, completion_mask, training=False):
    """Log-probabilities of the completion tokens under the causal LM ``model``.

    Token ``t`` is predicted by the logits at ``t - 1``: ``log p(x_t | x_<t)`` for every
    ``t >= 1`` with ``completion_mask[t] = padding_mask[t] = 1``.

    Args:
        model: a ``CausalLM`` (ids in, ``(batch, seq, vocab)`` logits out).
        token_ids, padding_mask, completion_mask: ``(batch, seq)``.

    Returns:
        ``(summed, log_probs, counted)``: ``(batch,)`` float32 sums of the counted tokens'
        log-probabilities; the ``(batch, seq - 1, vocab)`` float32 log-softmax of the logits
        at positions ``0..seq-2``; the ``(batch, seq - 1)`` float32 weights (1 = counted).
    """
    gathered, log_probs = token_log_probs(model, token_ids, padding_mask, training)
    counted = counted_tokens(padding_mask, completion_mask)
    return tf.reduce_sum(gathered * counted, axis=-1), log_probs, counted
