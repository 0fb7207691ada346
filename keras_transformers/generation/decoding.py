"""The decode loops, written once for every model: sampling (greedy included) and beam search.

A model takes part through two functions (see ``CausalLM.generation_functions``):

* ``prefill(prompt_ids, prompt_lengths, cache_length) -> (logits, cache, context)``: run the
  right-padded ``(batch, prompt_len)`` prompts once, filling a fresh fixed-size cache; return
  the ``(batch, vocab)`` logits after each row's last real token, the cache, and whatever
  the steps read but never change (a seq2seq model's encoder keys/values).
* ``step(token_ids, slots, cache, context) -> (logits, cache)``: one ``(batch,)`` token per
  row at its own cache slot (= position) ``(batch,)``.

Row ``b``'s new tokens go to positions ``prompt_lengths[b], prompt_lengths[b] + 1, ...`` of a
``(batch, width)`` token buffer (the prompts, right-padded to ``width >= prompt_len +
max_new_tokens``) and of a cache of ``width`` slots, so a batch of prompts of different lengths
decodes in lockstep with no gaps. The prefill runs over the prompts' own width only; under XLA
``width`` is a compile-time constant (one program per value, as for a shape). ``max_new_tokens``
is a tensor: one compiled loop serves every count that fits the buffer. Everything runs inside
one ``tf.function(jit_compile=True)``: one ``tf.while_loop``, no host round trip per token.

Non-finite logits (NaN or inf, from NaN weights or an overflow) never become a token: the row
stops before that token, its ``nonfinite`` flag is set, and the rest of the row is padding.
"""

import tensorflow as tf

from keras_transformers.generation.sampling import select_next_token

_NEG_INF = -1e9  # a finite -inf: beam scores add it without producing NaN


def _write_tokens(tokens, token_ids, positions):
    """``tokens[b, positions[b]] = token_ids[b]`` for a ``(batch, length)`` buffer."""
    batch_index = tf.range(tf.shape(tokens)[0])
    return tf.tensor_scatter_nd_update(tokens, tf.stack([batch_index, positions], axis=-1), token_ids)


def token_buffer(prompt_ids, width, pad_token_id):
    """The ``(batch, width)`` token buffer: ``prompt_ids`` ``(batch, prompt_len)``, then
    ``pad_token_id`` up to ``width``."""
    return tf.pad(prompt_ids, [[0, 0], [0, width - tf.shape(prompt_ids)[1]]], constant_values=pad_token_id)


def _is_stop(token_ids, stop_token_ids):
    return tf.reduce_any(token_ids[:, None] == stop_token_ids[None, :], axis=-1)


def finite_rows(logits):
    """``(batch,)`` bool: whether every logit of the row is finite (no NaN, no inf)."""
    return tf.reduce_all(tf.math.is_finite(logits), axis=-1)


def sample(prefill, step, prompt_ids, prompt_lengths, width, max_new_tokens, seed, stop_token_ids,
           pad_token_id, greedy=True, temperature=1.0, top_k=None, top_p=None, active=None):
    """Greedy decoding or sampling; see :func:`select_next_token` for the settings.

    Args:
        prefill, step: the model's functions (module docstring).
        prompt_ids: ``(batch, prompt_len)`` int32, each row its prompt then padding.
        prompt_lengths: ``(batch,)`` int32, each ``>= 1``.
        width: int scalar, the token buffer's and the cache's size; it must hold each prompt
            plus ``max_new_tokens``.
        max_new_tokens: int scalar (Python or tensor).
        seed: ``(2,)`` int tensor; step ``i`` samples with ``seed + [0, i]``.
        stop_token_ids: ``(n,)`` int32; a row ends after emitting one, the rest is padding.
            Negative entries never match (they pad the list to a bucketed length).
        pad_token_id: what fills the buffer after each row's end.
        active: ``(batch,)`` bool or ``None`` (all): rows that decode; the others (rows that
            pad the batch to a bucketed size) start finished and cost no loop steps.

    Returns:
        ``(tokens, new_lengths, nonfinite)``: the ``(batch, width)`` buffer (prompts, then new
        tokens, then padding), the ``(batch,)`` number of new tokens per row (a stop token
        counts), and ``(batch,)`` bool, True where the row stopped on non-finite logits.
    """
    if active is None:
        active = tf.ones_like(prompt_lengths, tf.bool)

    def choose(logits, i):
        step_seed = seed + tf.stack([0, i])
        return select_next_token(logits, step_seed, greedy, temperature, top_k, top_p)

    logits, cache, context = prefill(prompt_ids, prompt_lengths, width)
    nonfinite = active & tf.logical_not(finite_rows(logits))
    alive = active & tf.logical_not(nonfinite)
    token = tf.where(alive, choose(logits, 0), pad_token_id)
    tokens = _write_tokens(token_buffer(prompt_ids, width, pad_token_id), token, prompt_lengths)
    new_lengths = tf.cast(alive, tf.int32)
    done = tf.logical_not(alive) | _is_stop(token, stop_token_ids)

    def keep_going(i, token, tokens, new_lengths, done, nonfinite, cache):
        return tf.logical_and(i < max_new_tokens, tf.logical_not(tf.reduce_all(done)))

    def body(i, token, tokens, new_lengths, done, nonfinite, cache):
        logits, cache = step(token, prompt_lengths + i - 1, cache, context)
        bad = tf.logical_not(done) & tf.logical_not(finite_rows(logits))
        nonfinite, done = nonfinite | bad, done | bad
        token = tf.where(done, pad_token_id, choose(logits, i))
        tokens = _write_tokens(tokens, token, prompt_lengths + i)
        new_lengths += tf.cast(tf.logical_not(done), tf.int32)
        done = tf.logical_or(done, _is_stop(token, stop_token_ids))
        return i + 1, token, tokens, new_lengths, done, nonfinite, cache

    _, _, tokens, new_lengths, _, nonfinite, _ = tf.while_loop(
        keep_going, body, (tf.constant(1), token, tokens, new_lengths, done, nonfinite, cache))
    return tokens, new_lengths, nonfinite


def beam_search(prefill, step, prompt_ids, prompt_lengths, width, max_new_tokens, stop_token_ids,
                pad_token_id, num_beams, length_penalty=1.0, active=None):
    """Beam search: keep the ``num_beams`` highest-scoring continuations of each prompt.

    A beam's score is the sum of its tokens' log-probabilities. A beam that emits a stop token
    is finished: it stays in the beam, extended only by padding at no cost, and so competes
    with the live beams on its frozen score. At the end each prompt returns its beam with the
    best ``score / new_length ** length_penalty`` (``length_penalty > 0`` favours longer
    outputs, ``< 0`` shorter). The cache rows follow their beams at every step (a gather).
    With ``num_beams=1`` this is greedy decoding. When a live beam of a prompt meets
    non-finite logits, that prompt stops: all its beams finish where they are and its
    ``nonfinite`` flag is set.

    Args and returns: as :func:`sample`, with ``num_beams`` (Python int) and
    ``length_penalty`` (scalar).
    """
    batch = prompt_ids.shape[0] or tf.shape(prompt_ids)[0]  # static when known: loop shapes stay fixed
    beams = num_beams
    if active is None:
        active = tf.ones_like(prompt_lengths, tf.bool)
    logits, cache, context = prefill(prompt_ids, prompt_lengths, width)

    def per_beam(tensor):  # (batch, ...) -> (batch * beams, ...), each row repeated
        return tf.repeat(tensor, beams, axis=0)

    cache, context, logits = tf.nest.map_structure(per_beam, (cache, context, logits))
    lengths = per_beam(prompt_lengths)
    tokens = per_beam(token_buffer(prompt_ids, width, pad_token_id))
    # All beams start as the same prompt: only the first may expand, so the first step picks
    # ``beams`` distinct tokens.
    scores = tf.tile(tf.constant([[0.0] + [_NEG_INF] * (beams - 1)]), [batch, 1])
    vocab_size = logits.shape[-1] or tf.shape(logits)[-1]
    only_padding = tf.where(tf.range(vocab_size) == pad_token_id, 0.0, _NEG_INF)

    def advance(i, logits, scores, tokens, new_lengths, done, nonfinite, cache):
        bad_beams = tf.logical_not(done) & tf.logical_not(finite_rows(logits))
        bad = tf.reduce_any(tf.reshape(bad_beams, [batch, beams]), axis=-1)  # per prompt
        nonfinite, done = nonfinite | bad, done | per_beam(bad)
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
        log_probs = tf.where(done[:, None], only_padding[None, :], log_probs)
        candidates = scores[:, :, None] + tf.reshape(log_probs, [batch, beams, vocab_size])
        scores, best = tf.math.top_k(tf.reshape(candidates, [batch, beams * vocab_size]), k=beams)
        source_rows = tf.reshape(tf.range(batch)[:, None] * beams + best // vocab_size, [-1])
        token = tf.reshape(best % vocab_size, [-1])
        tokens, new_lengths, done, cache = tf.nest.map_structure(
            lambda t: tf.gather(t, source_rows), (tokens, new_lengths, done, cache))
        token = tf.where(done, pad_token_id, token)  # a finished beam only ever adds padding
        tokens = _write_tokens(tokens, token, lengths + i)
        new_lengths += tf.cast(tf.logical_not(done), tf.int32)
        done = tf.logical_or(done, _is_stop(token, stop_token_ids))
        return token, scores, tokens, new_lengths, done, nonfinite, cache

    zeros = tf.zeros_like(lengths)
    token, scores, tokens, new_lengths, done, nonfinite, cache = advance(
        0, logits, scores, tokens, zeros, tf.logical_not(per_beam(active)),
        tf.zeros_like(prompt_lengths, tf.bool), cache)

    def keep_going(i, token, scores, tokens, new_lengths, done, nonfinite, cache):
        return tf.logical_and(i < max_new_tokens, tf.logical_not(tf.reduce_all(done)))

    def body(i, token, scores, tokens, new_lengths, done, nonfinite, cache):
        logits, cache = step(token, lengths + i - 1, cache, context)
        return (i + 1, *advance(i, logits, scores, tokens, new_lengths, done, nonfinite, cache))

    _, _, scores, tokens, new_lengths, _, nonfinite, _ = tf.while_loop(
        keep_going, body, (tf.constant(1), token, scores, tokens, new_lengths, done, nonfinite, cache))

    lengths_per_beam = tf.cast(tf.maximum(tf.reshape(new_lengths, [batch, beams]), 1), tf.float32)
    normalized = scores / lengths_per_beam ** tf.cast(length_penalty, tf.float32)
    best_rows = tf.range(batch) * beams + tf.argmax(normalized, axis=-1, output_type=tf.int32)
    return tf.gather(tokens, best_rows), tf.gather(new_lengths, best_rows), nonfinite
