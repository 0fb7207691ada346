"""``generate``: prompts in, token ids out, through a bounded set of compiled decode loops.

This module turns what a user passes (ragged lists or padded arrays, decoding settings) into
the static-shape tensors of :mod:`keras_transformers.generation.decoding`, checks every
argument eagerly with messages that name it, and keeps the compiled loops of each model.

What compiles, and how often:

* one ``tf.function`` trace per model and *static setting* (``num_beams``, greedy or not,
  ``top_k``, top-p or not, ``jit_compile``, pad id): its inputs have unknown shapes, and
  ``max_new_tokens``, temperature, ``top_p``, seed and stop tokens are tensors;
* one XLA program per trace and *input shape* (and buffer width, a compile-time constant), and
  every one is bucketed to a power of two: the batch (extra rows decode nothing and are
  dropped), the prompts' width (at least 8: the prefill runs over it), the buffer width
  ``longest prompt + max_new_tokens`` (at least 16, at most ``max_length``; the loop stops
  after ``max_new_tokens`` and the extra columns are cut), the number of stop tokens, and a
  seq2seq source's length (at least 8). A model with ``max_length=1024`` thus has at most
  ``log2(batch) + 1`` times 35 (prompt width, buffer width) pairs of programs per setting,
  however varied the calls; a fixed ``max_new_tokens`` meets one or two prompt widths per
  buffer width.

The traces are kept in a least-recently-used cache of :data:`CACHE_SIZE` settings per model
(:func:`cache_info`). XLA keeps each compiled program for the life of the process (TensorFlow
offers no way to free one), so a setting evicted and used again compiles afresh and its old
programs stay in memory: keep the number of settings in use below :data:`CACHE_SIZE`. Outputs
are identical with and without the bucketing (padding rows and columns are never attended to
by the real rows, and the sampler draws each row's noise independently of the batch size).
"""

import collections
import weakref

import numpy as np
import tensorflow as tf

from keras_transformers.generation import decoding
from keras_transformers.ops import get_jit_compile, jit_compile_scope

CACHE_SIZE = 8
"""How many static settings' decode functions each model keeps (least recently used evicted)."""

MIN_WIDTH = 16  # the narrowest token buffer (= cache) compiled
MIN_PROMPT_WIDTH = 8  # the narrowest prompts (= prefill) compiled
MIN_SOURCE_LENGTH = 8

_functions = weakref.WeakKeyDictionary()  # model -> OrderedDict {static setting: concrete function}
_programs = weakref.WeakKeyDictionary()  # model -> {(static setting, input shapes)}: XLA programs built
_trace_counts = weakref.WeakKeyDictionary()  # model -> number of traces of its decode loops


def trace_count(model):
    """How many times ``model``'s decode loops were traced (once per static setting while it
    stays in the cache; see the module docstring)."""
    return _trace_counts.get(model, 0)


def cache_info(model):
    """``{"functions", "maxsize", "programs", "traces"}`` of ``model``'s decode loops: traced
    functions held now (at most ``maxsize`` = :data:`CACHE_SIZE`), distinct (setting, input
    shape) programs built so far (each an XLA compile when ``jit_compile``), and traces."""
    return {"functions": len(_functions.get(model, ())), "maxsize": CACHE_SIZE,
            "programs": len(_programs.get(model, ())), "traces": trace_count(model)}


def bucket(n, minimum=1, limit=None):
    """The next power of two ``>= max(n, minimum)``, capped at ``limit`` (never below ``n``)."""
    size = 1 << (max(int(n), int(minimum)) - 1).bit_length()
    return max(int(n), size if limit is None else min(size, int(limit)))


def pad_to_bucket(ids, lengths, limit, pad_id, minimum=MIN_SOURCE_LENGTH, width=None):
    """Right-padded ``(batch, width)`` int32 ids, everything after each length ``pad_id``;
    ``width`` defaults to the bucket of the longest row (at least ``minimum``, at most
    ``limit``, never below the longest)."""
    width = bucket(int(lengths.max()), minimum, limit) if width is None else int(width)
    padded = np.full((ids.shape[0], width), pad_id, np.int32)
    columns = min(ids.shape[1], width)
    padded[:, :columns] = np.where(np.arange(columns)[None, :] < lengths[:, None], ids[:, :columns], pad_id)
    return padded


def pad_rows(array, rows, fill):
    """``array`` with ``rows - len(array)`` rows of ``fill`` appended (axis 0)."""
    extra = rows - array.shape[0]
    if extra <= 0:
        return array
    return np.concatenate([array, np.full((extra, *array.shape[1:]), fill, array.dtype)], axis=0)


def pad_prompts(token_ids, padding_mask=None, name="token_ids"):
    """Prompts as right-padded ``(batch, prompt_len)`` int ids and their ``(batch,)`` int32 lengths.

    ``token_ids`` is a list of id lists (of any lengths), a ``tf.RaggedTensor``, or a 2-D
    array / tensor, whose ``padding_mask`` (1 = real token; right padding only) says where
    each row ends; without one every position is real.
    """
    if isinstance(token_ids, (str, bytes)):
        raise TypeError(f"`{name}` must be token ids (a list of id lists), got the string "
                        f"{token_ids[:40]!r}; generate_text takes text.")
    if isinstance(token_ids, tf.RaggedTensor):
        token_ids = token_ids.to_list()
    if isinstance(token_ids, (list, tuple)) and not token_ids:
        raise ValueError(f"`{name}` is an empty batch.")
    if isinstance(token_ids, (list, tuple)) and all(
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
        if padding_mask is None:  # every position is real: nothing to check
            return _checked(ids, np.full(ids.shape[:1], ids.shape[1], np.int32), name)
        mask = np.asarray(padding_mask)
        if mask.shape != ids.shape:
            raise ValueError(f"`padding_mask` must have the shape of `{name}` {ids.shape}, got {mask.shape}.")
        if mask.size and not np.isin(mask, (0, 1)).all():
            bad = mask[~np.isin(mask, (0, 1))].reshape(-1)[0].item()
            raise ValueError(f"`padding_mask` must hold booleans or 0/1, got {bad!r}.")
        mask = mask.astype(bool)
        lengths = mask.sum(axis=1).astype(np.int32)
        right_padded = np.arange(ids.shape[1])[None, :] < lengths[:, None]
        bad_rows = np.flatnonzero((mask != right_padded).any(axis=1))
        if bad_rows.size:
            raise ValueError(f"`padding_mask` must be right padding (1s, then 0s); row {bad_rows[0]} "
                             f"is {mask[bad_rows[0]].astype(int).tolist()}.")
    return _checked(ids, lengths, name)


def _checked(ids, lengths, name):
    """``(ids, lengths)`` once the batch, the ids' dtype and every length are valid."""
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


def _is_integer(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _real(name, value):
    """``value`` as a float; a ``TypeError`` unless it is a real number, a ``ValueError`` unless finite."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__} {value!r}.")
    if not np.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value}.")
    return float(value)


def stop_ids(stop_token_ids, vocab_size):
    """``stop_token_ids`` (``None``, one id or a list of ids) as an int32 array, checked."""
    if stop_token_ids is None:
        return np.zeros([0], np.int32)
    values = [stop_token_ids] if _is_integer(stop_token_ids) else stop_token_ids
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple, np.ndarray, range, set)):
        raise TypeError("`stop_token_ids` must be a token id or a list of token ids, got "
                        f"{type(stop_token_ids).__name__} {stop_token_ids!r}.")
    values = list(np.asarray(values).reshape(-1).tolist()) if isinstance(values, np.ndarray) else list(values)
    for value in values:
        if not _is_integer(value):
            raise TypeError(f"`stop_token_ids` must hold integer ids, got {type(value).__name__} {value!r}.")
    stop = np.asarray(values, np.int64).reshape(-1)
    if stop.size and (stop.min() < 0 or stop.max() >= vocab_size):
        raise ValueError(f"`stop_token_ids` {stop.tolist()} must lie in [0, vocab_size={vocab_size}).")
    return stop.astype(np.int32)


def check_settings(vocab_size, max_new_tokens, temperature, top_k, top_p, num_beams,
                   length_penalty=1.0, stop_token_ids=None):
    """Check the decoding settings eagerly, naming the argument; returns the stop ids (int32).

    Every setting must be of its type (``TypeError`` otherwise: ``top_k=2.5``,
    ``temperature="1"``) and finite and in range (``ValueError``: ``temperature=nan``).
    """
    if not _is_integer(max_new_tokens) or max_new_tokens < 1:
        raise ValueError(f"`max_new_tokens` must be a positive integer, got {max_new_tokens!r}.")
    temperature = _real("temperature", temperature)
    if temperature < 0:
        raise ValueError(f"`temperature` must be >= 0 (0 = greedy), got {temperature}.")
    if top_k is not None:
        if not _is_integer(top_k):
            raise TypeError(f"`top_k` must be an integer in [1, vocab_size={vocab_size}], got "
                            f"{type(top_k).__name__} {top_k!r}.")
        if not 1 <= top_k <= vocab_size:
            raise ValueError(f"`top_k` must be in [1, vocab_size={vocab_size}], got {top_k}.")
    if top_p is not None:
        top_p = _real("top_p", top_p)
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"`top_p` must be in (0, 1], got {top_p}.")
    if temperature == 0 and (top_k is not None or top_p is not None):
        raise ValueError("`top_k` and `top_p` restrict sampling; with temperature=0 decoding is "
                         "greedy. Pass a temperature > 0 (1.0 samples the model's distribution).")
    if not _is_integer(num_beams) or num_beams < 1:
        raise ValueError(f"`num_beams` must be a positive integer, got {num_beams!r}.")
    if num_beams > 1 and temperature > 0:
        raise ValueError(f"Beam search is deterministic: pass temperature=0 with num_beams={num_beams}, "
                         f"got temperature={temperature}.")
    _real("length_penalty", length_penalty)
    return stop_ids(stop_token_ids, vocab_size)


def too_long_message(longest, max_new_tokens, max_length, sliding_window=True):
    """Why a prompt plus ``max_new_tokens`` does not fit, and the ways out."""
    remedies = "build the model from a config with a larger `max_length`"
    if sliding_window:
        remedies = ("use keras_transformers.generation.generate_uncached, which slides a window "
                    f"past max_length, or {remedies}")
    return (f"The longest prompt ({longest} tokens) plus `max_new_tokens` ({max_new_tokens}) is "
            f"{longest + max_new_tokens}, more than the model's max_length={max_length}. Shorten "
            f"the prompt, ask for fewer tokens, {remedies}.")


class NonFiniteLogitsError(ValueError):
    """The model's logits held NaN or inf during generation (NaN weights, an overflow):
    no token could be chosen. ``rows`` lists the batch rows affected."""

    def __init__(self, message, rows):
        super().__init__(message)
        self.rows = rows


def generate(model, prompt_ids, prompt_lengths, max_new_tokens, *, max_length, temperature=0.0,
             top_k=None, top_p=None, num_beams=1, length_penalty=1.0, stop_token_ids=None,
             seed=None, pad_token_id=0, jit_compile=None, prompt_name="token_ids",
             extra_inputs=(), sliding_window=True, on_nonfinite="raise"):
    """Decode ``max_new_tokens`` after each prompt with ``model.generation_functions``.

    The shared body of ``CausalLM.generate`` and ``Seq2Seq.generate``; see those for the
    arguments. ``prompt_ids``/``prompt_lengths`` come from :func:`pad_prompts`;
    ``max_length`` bounds prompt + new tokens (the position table); ``extra_inputs`` are
    NumPy arrays with one row per prompt, passed through to the model's prefill (a seq2seq
    model's source ids and mask), padded to the bucketed batch with copies of their last row.

    ``on_nonfinite``: ``"raise"`` (what the models' ``generate`` does) or ``"flag"``: return
    the rows as the compiled loop left them, each stopped before its first non-finite logits,
    with a ``nonfinite`` ``(batch,)`` bool entry (what the serving signature returns).

    Returns:
        A dict of NumPy arrays: ``token_ids`` ``(batch, longest_prompt + max_new_tokens)``
        int32, each row its prompt, its new tokens, then ``pad_token_id``; and
        ``padding_mask`` of the same shape, True on prompt and new tokens.

    Raises:
        NonFiniteLogitsError: (a ``ValueError``) the model's logits held NaN or inf; nothing
            outside ``[0, vocab_size)`` is ever returned.
    """
    if on_nonfinite not in ("raise", "flag"):
        raise ValueError(f'`on_nonfinite` must be "raise" or "flag", got {on_nonfinite!r}.')
    vocab_size = model.config.vocab_size
    stop = check_settings(vocab_size, max_new_tokens, temperature, top_k, top_p, num_beams,
                          length_penalty, stop_token_ids)
    check_ids(prompt_ids, prompt_lengths, vocab_size, prompt_name)
    longest = int(prompt_lengths.max())
    if longest + max_new_tokens > max_length:
        raise ValueError(too_long_message(longest, max_new_tokens, max_length, sliding_window))
    batch = len(prompt_lengths)
    rows = bucket(batch)
    width = bucket(longest + max_new_tokens, MIN_WIDTH, max_length)
    ids = pad_rows(pad_to_bucket(prompt_ids, prompt_lengths, width, pad_token_id, MIN_PROMPT_WIDTH),
                   rows, pad_token_id)
    lengths = pad_rows(prompt_lengths.astype(np.int32), rows, 0)  # 0: a row that only pads the batch
    # Negative ids never match a token: they pad the stop list to a bucketed length.
    stop = np.concatenate([stop, np.full(bucket(stop.size) - stop.size, -1, np.int32)])
    extra = tuple(tf.constant(_repeat_last(np.asarray(t), rows)) for t in extra_inputs)
    if seed is None:
        seed = np.random.randint(0, 2**31 - 1)
    jit_compile = get_jit_compile() if jit_compile is None else bool(jit_compile)
    static = (int(num_beams), temperature == 0, None if top_k is None else int(top_k), top_p is not None,
              jit_compile, int(pad_token_id))
    if not model.built:  # create every weight before tracing, as a first call would
        model.build(None)
    inputs = (tf.constant(ids), tf.constant(lengths), tf.constant(width, tf.int32),
              tf.constant(int(max_new_tokens)), extra, tf.constant([0, int(seed) % 2**31], tf.int32),
              tf.constant(stop), tf.constant(float(temperature or 1.0)), tf.constant(float(top_p or 1.0)),
              tf.constant(float(length_penalty)))
    tokens, new_lengths, nonfinite = compiled_function(model, static, inputs)(*inputs)
    nonfinite = nonfinite.numpy()[:batch]
    if nonfinite.any() and on_nonfinite == "raise":
        bad = np.flatnonzero(nonfinite).tolist()
        raise NonFiniteLogitsError(
            f"{type(model).__name__} produced non-finite logits (NaN or inf) for prompt row(s) {bad}: "
            "no token can be chosen from them. Its weights or activations hold NaN/inf (check the "
            "checkpoint, or lower the learning rate if training diverged).", bad)
    total = prompt_lengths + new_lengths.numpy()[:batch]
    width = longest + max_new_tokens
    tokens = tokens.numpy()[:batch, :width]
    mask = np.arange(width)[None, :] < total[:, None]
    # Each row is contiguous (prompt, then new tokens), so the first `width` columns hold all.
    outputs = {"token_ids": np.where(mask, tokens, np.int32(pad_token_id)), "padding_mask": mask}
    if on_nonfinite == "flag":
        outputs["nonfinite"] = nonfinite
    return outputs


def _repeat_last(array, rows):
    """``array`` with copies of its last row appended up to ``rows`` rows: valid inputs for
    the batch rows that only pad the batch to its bucket."""
    extra = rows - array.shape[0]
    if extra <= 0:
        return array
    return np.concatenate([array, np.repeat(array[-1:], extra, axis=0)], axis=0)


def _spec(tensor):
    return tf.TensorSpec([None] * tensor.shape.rank, tensor.dtype)


def compiled_function(model, static, inputs):
    """The concrete decode function of ``model`` for ``static``, traced once with every
    input shape unknown (so XLA compiles one program per shape and buffer width, and reuses
    it), from the model's LRU cache of :data:`CACHE_SIZE` settings."""
    functions = _functions.setdefault(model, collections.OrderedDict())
    programs = _programs.setdefault(model, set())
    width = int(inputs[2])  # a compile-time constant of the program, as the shapes are
    programs.add((static, width, tuple(tuple(t.shape) for t in tf.nest.flatten(inputs))))
    if static in functions:
        functions.move_to_end(static)
        return functions[static]
    specs = tf.nest.map_structure(_spec, inputs)
    specs = (*specs[:5], tf.TensorSpec([2], tf.int32), *specs[6:])  # the seed is (2,)
    with jit_compile_scope(static[4]):  # the attention core follows the loop: XLA or not
        function = decode_function(model, static).get_concrete_function(*specs)
    functions[static] = function
    while len(functions) > CACHE_SIZE:
        functions.popitem(last=False)
    return function


def decode_function(model, static):
    """``model``'s decode loop for one static setting, as a ``tf.function`` (XLA-compiled when
    ``jit_compile``). :func:`generate` calls it on bucketed NumPy prompts; the serving
    signatures of :mod:`keras_transformers.export` call it inside their graph.

    ``static`` is ``(num_beams, greedy, top_k, use_top_p, jit_compile, pad_token_id)``; the
    function takes ``(prompt_ids, prompt_lengths, width, max_new_tokens, extra_inputs, seed,
    stop_token_ids, temperature, top_p, length_penalty)`` (``prompt_ids`` ``(batch,
    prompt_len)``: each prompt right-padded; ``prompt_lengths`` ``(batch,)``, 0 for a row that
    only pads the batch and decodes nothing; ``width`` the token buffer's (= cache's) size,
    which must hold each prompt plus ``max_new_tokens``) and returns ``(tokens, new_lengths,
    nonfinite)`` as :func:`~keras_transformers.generation.decoding.sample` does (``tokens``
    ``(batch, width)``), with every token after a row's end set to ``pad_token_id``.
    """
    num_beams, greedy, top_k, use_top_p, jit_compile, pad_token_id = static
    prefill, step = model.generation_functions()

    def decode(prompt_ids, prompt_lengths, width, max_new_tokens, extra_inputs, seed, stop_token_ids,
               temperature, top_p, length_penalty):
        _trace_counts[model] = _trace_counts.get(model, 0) + 1  # runs only when tracing
        active = prompt_lengths > 0
        prompt_lengths = tf.maximum(prompt_lengths, 1)  # a padding row reads its first token

        def prefill_with_inputs(ids, lengths, cache_length):
            return prefill(ids, lengths, cache_length, *extra_inputs)

        if num_beams > 1:
            tokens, new_lengths, nonfinite = decoding.beam_search(
                prefill_with_inputs, step, prompt_ids, prompt_lengths, width, max_new_tokens,
                stop_token_ids, pad_token_id, num_beams, length_penalty, active=active)
        else:
            tokens, new_lengths, nonfinite = decoding.sample(
                prefill_with_inputs, step, prompt_ids, prompt_lengths, width, max_new_tokens, seed,
                stop_token_ids, pad_token_id, greedy=greedy, temperature=temperature, top_k=top_k,
                top_p=top_p if use_top_p else None, active=active)
        ends = prompt_lengths + new_lengths
        tokens = tf.where(tf.range(tf.shape(tokens)[1])[None, :] < ends[:, None], tokens, pad_token_id)
        return tokens, new_lengths, nonfinite

    return tf.function(decode, jit_compile=jit_compile)
