"""``generate``: prompts in, token ids out, through one compiled decode loop per setting.

This module turns what a user passes (ragged lists or padded arrays, decoding settings) into
the static-shape tensors of :mod:`keras_transformers.generation.decoding`, checks every
argument eagerly with messages that name it, and keeps one compiled function per model,
static setting and input shapes, so a second call with same-shaped inputs neither retraces
nor recompiles.
Prompt lengths are padded up to a bucket (a power of two, at least 8), so prompts of
different lengths in the same bucket share the compiled loop.
"""

import weakref

import numpy as np
import tensorflow as tf

from keras_transformers.generation import decoding
from keras_transformers.ops import get_jit_compile, jit_compile_scope

_compiled = weakref.WeakKeyDictionary()  # model -> {static settings + shapes: concrete function}
_trace_counts = weakref.WeakKeyDictionary()  # model -> number of traces of its decode loops


def trace_count(model):
    """How many times ``model``'s decode loops were traced (each trace is also an XLA compile)."""
    return _trace_counts.get(model, 0)


def _bucket(length, limit):
    """The padded prompt length: the next power of two (>= 8), never past ``limit``."""
    return min(max(8, 1 << (int(length) - 1).bit_length()), limit)


def pad_to_bucket(ids, lengths, limit, pad_id):
    """Right-padded ``(batch, bucket)`` int32 ids, ``bucket`` = :func:`_bucket` of the longest
    row (at least the longest, at most ``limit``), everything after each length ``pad_id``."""
    longest = int(lengths.max())
    bucket = max(_bucket(longest, limit), longest)
    padded = np.full((ids.shape[0], bucket), pad_id, np.int32)
    width = min(ids.shape[1], bucket)
    padded[:, :width] = np.where(np.arange(width)[None, :] < lengths[:, None], ids[:, :width], pad_id)
    return padded


def pad_prompts(token_ids, padding_mask=None, name="token_ids"):
    """Prompts as right-padded ``(batch, prompt_len)`` int ids and their ``(batch,)`` int32 lengths.

    ``token_ids`` is a list of id lists (of any lengths), a ``tf.RaggedTensor``, or a 2-D
    array / tensor, whose ``padding_mask`` (1 = real token; right padding only) says where
    each row ends; without one every position is real.
    """
    if isinstance(token_ids, tf.RaggedTensor):
        token_ids = token_ids.to_list()
    if isinstance(token_ids, (list, tuple)) and token_ids and all(
            isinstance(row, (list, tuple, np.ndarray)) for row in token_ids):
        if padding_mask is not None:
            raise ValueError(f"`padding_mask` is only for a padded 2-D `{name}`; a list of "
                             "rows carries its own lengths.")
        rows = [np.asarray(row) for row in token_ids]
        for row, values in enumerate(rows):
            if values.ndim != 1 or (values.size and not np.issubdtype(values.dtype, np.integer)):
                raise ValueError(f"`{name}` row {row} must be a flat list of integer ids, got "
                                 f"{values.dtype} values of shape {values.shape}.")
        lengths = np.array([row.size for row in rows], np.int32)
        ids = np.zeros((len(rows), max(lengths.max(), 1)), np.int64)
        for row, values in enumerate(rows):
            ids[row, :values.size] = values
    else:
        ids = np.asarray(token_ids)
        if ids.ndim != 2:
            raise ValueError(f"`{name}` must be a list of id lists or have shape (batch, prompt_len), "
                             f"got shape {ids.shape}.")
        mask = np.ones(ids.shape, bool) if padding_mask is None else np.asarray(padding_mask).astype(bool)
        if mask.shape != ids.shape:
            raise ValueError(f"`padding_mask` must have the shape of `{name}` {ids.shape}, got {mask.shape}.")
        lengths = mask.sum(axis=1).astype(np.int32)
        right_padded = np.arange(ids.shape[1])[None, :] < lengths[:, None]
        bad_rows = np.flatnonzero((mask != right_padded).any(axis=1))
        if bad_rows.size:
            raise ValueError(f"`padding_mask` must be right padding (1s, then 0s); row {bad_rows[0]} "
                             f"is {mask[bad_rows[0]].astype(int).tolist()}.")
    if ids.shape[0] == 0:
        raise ValueError(f"`{name}` is an empty batch.")
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"`{name}` must be integers, got dtype {ids.dtype}.")
    if lengths.min() < 1:
        raise ValueError(f"Every prompt in `{name}` needs at least one token; row "
                         f"{int(np.argmin(lengths))} is empty.")
    return ids, lengths


def check_ids(ids, lengths, vocab_size, name):
    real = np.arange(ids.shape[1])[None, :] < lengths[:, None]
    bad = real & ((ids < 0) | (ids >= vocab_size))
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise ValueError(f"`{name}` holds id {ids[row, column]} (row {row}, position {column}), "
                         f"outside [0, vocab_size={vocab_size}).")


def check_settings(vocab_size, max_new_tokens, temperature, top_k, top_p, num_beams,
                   length_penalty=1.0, stop_token_ids=None):
    """Check the decoding settings eagerly, naming the argument; returns the stop ids (int32)."""
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
        raise ValueError(f"`max_new_tokens` must be a positive integer, got {max_new_tokens!r}.")
    if temperature < 0:
        raise ValueError(f"`temperature` must be >= 0 (0 = greedy), got {temperature}.")
    if top_k is not None and not 1 <= top_k <= vocab_size:
        raise ValueError(f"`top_k` must be in [1, vocab_size={vocab_size}], got {top_k}.")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"`top_p` must be in (0, 1], got {top_p}.")
    if temperature == 0 and (top_k is not None or top_p is not None):
        raise ValueError("`top_k` and `top_p` restrict sampling; with temperature=0 decoding is "
                         "greedy. Pass a temperature > 0 (1.0 samples the model's distribution).")
    if not isinstance(num_beams, (int, np.integer)) or num_beams < 1:
        raise ValueError(f"`num_beams` must be a positive integer, got {num_beams!r}.")
    if num_beams > 1 and temperature > 0:
        raise ValueError(f"Beam search is deterministic: pass temperature=0 with num_beams={num_beams}, "
                         f"got temperature={temperature}.")
    if not np.isfinite(length_penalty):
        raise ValueError(f"`length_penalty` must be finite, got {length_penalty}.")
    stop = np.asarray(list(stop_token_ids or []), np.int64).reshape(-1)
    if stop.size and (stop.min() < 0 or stop.max() >= vocab_size):
        raise ValueError(f"`stop_token_ids` {stop.tolist()} must lie in [0, vocab_size={vocab_size}).")
    return stop.astype(np.int32)


def generate(model, prompt_ids, prompt_lengths, max_new_tokens, *, max_length, temperature=0.0,
             top_k=None, top_p=None, num_beams=1, length_penalty=1.0, stop_token_ids=None,
             seed=None, pad_token_id=0, jit_compile=None, prompt_name="token_ids",
             extra_inputs=()):
    """Decode ``max_new_tokens`` after each prompt with ``model.generation_functions``.

    The shared body of ``CausalLM.generate`` and ``Seq2Seq.generate``; see those for the
    arguments. ``prompt_ids``/``prompt_lengths`` come from :func:`pad_prompts`;
    ``max_length`` bounds prompt + new tokens (the position table); ``extra_inputs`` are
    tensors passed through to the model's prefill (a seq2seq model's source).

    Returns:
        A dict of NumPy arrays: ``token_ids`` ``(batch, longest_prompt + max_new_tokens)``
        int32, each row its prompt, its new tokens, then ``pad_token_id``; and
        ``padding_mask`` of the same shape, True on prompt and new tokens.
    """
    vocab_size = model.config.vocab_size
    stop = check_settings(vocab_size, max_new_tokens, temperature, top_k, top_p, num_beams,
                           length_penalty, stop_token_ids)
    check_ids(prompt_ids, prompt_lengths, vocab_size, prompt_name)
    longest = int(prompt_lengths.max())
    if longest + max_new_tokens > max_length:
        raise ValueError(
            f"The longest prompt ({longest} tokens) plus `max_new_tokens` ({max_new_tokens}) is "
            f"{longest + max_new_tokens}, more than the model's max_length={max_length}. Shorten "
            "the prompt or ask for fewer tokens (for a CausalLM, generation.generate_uncached slides a "
            "window past max_length).")
    ids = pad_to_bucket(prompt_ids, prompt_lengths, max_length - max_new_tokens, pad_token_id)
    if seed is None:
        seed = np.random.randint(0, 2**31 - 1)
    jit_compile = get_jit_compile() if jit_compile is None else bool(jit_compile)
    greedy = temperature == 0
    static = (int(max_new_tokens), int(num_beams), greedy, top_k, top_p is not None, jit_compile,
              int(pad_token_id))
    if not model.built:  # create every weight before tracing, as a first call would
        model.build(None)
    inputs = (tf.constant(ids), tf.constant(prompt_lengths, tf.int32), tuple(extra_inputs),
              tf.constant([0, int(seed) % 2**31], tf.int32), tf.constant(stop, tf.int32),
              tf.constant(float(temperature or 1.0)), tf.constant(float(top_p or 1.0)),
              tf.constant(float(length_penalty)))
    # One concrete function per static setting and input shapes, called directly: this skips
    # tf.function's per-call signature matching (about a millisecond, a third of a short call).
    key = static + tuple(tuple(t.shape) for t in tf.nest.flatten(inputs))
    compiled = _compiled.setdefault(model, {})
    if key not in compiled:
        with jit_compile_scope(jit_compile):  # the attention core follows the loop: XLA or not
            compiled[key] = decode_function(model, static).get_concrete_function(*inputs)
    tokens, new_lengths = compiled[key](*inputs)
    total = prompt_lengths + new_lengths.numpy()
    width = longest + max_new_tokens
    tokens = tokens.numpy()
    # Each row is contiguous (prompt, then new tokens), so the first `width` columns hold all.
    return {"token_ids": tokens[:, :width],
            "padding_mask": np.arange(width)[None, :] < total[:, None]}


def decode_function(model, static):
    """``model``'s decode loop for one static setting, as a ``tf.function`` (XLA-compiled when
    ``jit_compile``). :func:`generate` calls it on padded NumPy prompts; the serving signatures
    of :mod:`keras_transformers.export` call it inside their graph.

    ``static`` is ``(max_new_tokens, num_beams, greedy, top_k, use_top_p, jit_compile,
    pad_token_id)``; the function takes ``(prompt_ids, prompt_lengths, extra_inputs, seed,
    stop_token_ids, temperature, top_p, length_penalty)`` and returns ``(tokens, new_lengths)``
    as :func:`~keras_transformers.generation.decoding.sample` does.
    """
    max_new_tokens, num_beams, greedy, top_k, use_top_p, jit_compile, pad_token_id = static
    prefill, step = model.generation_functions()

    def decode(prompt_ids, prompt_lengths, extra_inputs, seed, stop_token_ids, temperature,
               top_p, length_penalty):
        _trace_counts[model] = _trace_counts.get(model, 0) + 1  # runs only when tracing

        def prefill_with_inputs(ids, lengths, cache_length):
            return prefill(ids, lengths, cache_length, *extra_inputs)

        if num_beams > 1:
            return decoding.beam_search(
                prefill_with_inputs, step, prompt_ids, prompt_lengths, max_new_tokens,
                stop_token_ids, pad_token_id, num_beams, length_penalty)
        return decoding.sample(
            prefill_with_inputs, step, prompt_ids, prompt_lengths, max_new_tokens, seed,
            stop_token_ids, pad_token_id, greedy=greedy, temperature=temperature, top_k=top_k,
            top_p=top_p if use_top_p else None)

    return tf.function(decode, jit_compile=jit_compile)
