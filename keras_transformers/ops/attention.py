"""The attention core: ``softmax(Q·Kᵀ/√d_k + M)·V`` as one pure function.

This module owns the two decisions every attention layer shares:

* **Masking.** Masks are booleans, ``True`` where a query may attend to a key, broadcast to
  ``(batch, heads, q_len, k_len)``. A causal mask is built here, never by callers. A query
  row that may attend to nothing gets all-zero weights (and so a zero output), never NaN.
* **Compilation.** By default the core runs as ``tf.function(jit_compile=True)``, so XLA
  fuses the score/mask/softmax/dropout chain into a few kernels. TF Serving on CPU and
  tf2onnx cannot run functions marked ``_XlaMustCompile``; export traces the core without
  XLA via :func:`jit_compile_scope` (or ``jit_compile=False`` per call).

Nothing here has weights, and nothing imports the rest of the package.
"""

import contextlib
import operator

import tensorflow as tf

from keras_transformers.ops.chunked_attention import (
    DEFAULT_KEY_BLOCK,
    DEFAULT_QUERY_BLOCK,
    check_block_size,
    chunked_attention,
)

IMPLEMENTATIONS = ("auto", "exact", "chunked")
# "auto" runs the chunked form when both lengths are known and at least this long (measured in
# benchmarks/long_context.py: below it the exact form is as fast and fits in memory).
AUTO_CHUNKED_MIN_LENGTH = 2048

_jit_compile = True


def get_jit_compile():
    """Whether :func:`scaled_dot_product_attention` compiles with XLA by default."""
    return _jit_compile


def set_jit_compile(enabled):
    """Set whether :func:`scaled_dot_product_attention` compiles with XLA by default."""
    global _jit_compile
    _jit_compile = bool(enabled)


@contextlib.contextmanager
def jit_compile_scope(enabled):
    """Temporarily compile (or not) the attention core with XLA.

    Example:
        >>> with jit_compile_scope(False):   # trace a graph TF Serving on CPU can run
        ...     concrete = tf.function(model).get_concrete_function(spec)
    """
    previous = _jit_compile
    set_jit_compile(enabled)
    try:
        yield
    finally:
        set_jit_compile(previous)


def causal_mask(q_len, k_len, sliding_window=None):
    """Boolean ``(q_len, k_len)`` mask; query ``i`` sees keys ``j <= i + (k_len - q_len)``.

    The queries are taken to be the last ``q_len`` positions of the ``k_len`` keys, which is
    the case both for a full sequence (``q_len == k_len``) and for new tokens appended to
    keys that precede them. With ``sliding_window=W`` (Mistral, Qwen2), the query at absolute
    position ``i = row + (k_len - q_len)`` sees only the ``W`` most recent keys, itself
    included: ``i - W < j <= i`` (transformers' ``sliding_window_overlay``: ``kv_idx > q_idx - W``).

    Example:
        >>> causal_mask(4, 4, sliding_window=2).numpy().astype(int)
        array([[1, 0, 0, 0],
               [1, 1, 0, 0],
               [0, 1, 1, 0],
               [0, 0, 1, 1]])
    """
    query_positions = tf.range(q_len)[:, None] + (k_len - q_len)
    key_positions = tf.range(k_len)[None, :]
    visible = key_positions <= query_positions
    if sliding_window is not None:
        visible = tf.logical_and(visible, key_positions > query_positions - sliding_window)
    return visible


def check_sliding_window(sliding_window):
    """``sliding_window`` as a positive int, or ``None``; a clear ``ValueError`` otherwise."""
    if sliding_window is None:
        return None
    try:
        window = operator.index(sliding_window)  # int or NumPy integer, not a float or bool
    except TypeError:
        window = 0
    if isinstance(sliding_window, bool) or window < 1:
        raise ValueError(f"`sliding_window` must be a positive integer or None, got {sliding_window!r}.")
    return window


def _attention(query, key, value, mask, causal, scale, dropout_rate, seed, return_weights,
               sliding_window=None, bias=None):
    batch, num_heads, q_len, head_dim = tf.unstack(tf.shape(query))
    num_kv_heads, k_len = tf.shape(key)[1], tf.shape(key)[2]
    group_size = num_heads // num_kv_heads

    # Grouped-query attention without copying K and V: the query heads that share a KV head
    # are folded into the query-length axis, so one batched matmul serves the whole group.
    # Query head h uses KV head h // group_size (the Llama / "repeat_interleave" convention).
    grouped_query = tf.reshape(query * tf.cast(scale, query.dtype),
                               [batch, num_kv_heads, group_size * q_len, head_dim])
    scores = tf.matmul(grouped_query, key, transpose_b=True)
    scores = tf.reshape(scores, [batch, num_heads, q_len, k_len])

    # Softmax in float32 whatever the compute dtype: bf16 has 8 mantissa bits.
    scores = tf.cast(scores, tf.float32)
    if bias is not None:
        scores = scores + tf.cast(bias, tf.float32)
    if causal:
        visible = causal_mask(q_len, k_len, sliding_window)
        mask = visible if mask is None else tf.logical_and(mask, visible)
    if mask is not None:
        scores = tf.where(mask, scores, tf.float32.min)
    weights = tf.nn.softmax(scores, axis=-1)
    if mask is not None:
        # A row with no visible key has a uniform softmax over float32.min; zero it.
        weights = weights * tf.cast(mask, weights.dtype)
    if dropout_rate > 0.0:
        keep = tf.random.stateless_uniform(tf.shape(weights), seed=seed) >= dropout_rate
        weights = tf.where(keep, weights / (1.0 - dropout_rate), 0.0)

    weights = tf.cast(weights, value.dtype)
    grouped_weights = tf.reshape(weights, [batch, num_kv_heads, group_size * q_len, k_len])
    outputs = tf.matmul(grouped_weights, value)
    outputs = tf.reshape(outputs, [batch, num_heads, q_len, head_dim])
    return (outputs, weights) if return_weights else outputs


_attention_xla = tf.function(_attention, jit_compile=True, reduce_retracing=True)


def _use_chunked(implementation, query, key, return_weights, bias=None):
    """Exact when weights are asked for (they are the whole matrix), with an additive bias, or
    when the lengths are short or unknown; chunked when asked for, or ``"auto"`` and both
    lengths are long."""
    if implementation == "chunked" and bias is not None:
        raise ValueError("implementation='chunked' takes no additive `bias` (e.g. T5's relative "
                         "position bias): use 'exact' or 'auto'.")
    if return_weights or bias is not None or implementation == "exact":
        return False
    if implementation == "chunked":
        return True
    q_len, k_len = query.shape[2], key.shape[2]
    return q_len is not None and k_len is not None and min(q_len, k_len) >= AUTO_CHUNKED_MIN_LENGTH


def _check_rank(name, tensor, rank):
    if tensor.shape.rank != rank:
        raise ValueError(
            f"`{name}` must have rank {rank} (batch, heads, seq, head_dim), got rank "
            f"{tensor.shape.rank} with shape {tensor.shape}."
        )


def scaled_dot_product_attention(query, key, value, mask=None, causal=False, scale=None,
                                 dropout_rate=0.0, training=False, seed=None,
                                 return_weights=False, jit_compile=None, sliding_window=None,
                                 implementation="auto", query_block=None, key_block=None, bias=None):
    """Scaled dot-product attention, ``softmax(Q·Kᵀ·scale + B + M)·V`` (Vaswani et al., eq. 1).

    Args:
        query: ``(batch, num_heads, q_len, head_dim)``.
        key: ``(batch, num_kv_heads, k_len, head_dim)``; ``num_heads`` must be a multiple of
            ``num_kv_heads`` (grouped-query attention when fewer; query head ``h`` reads KV
            head ``h // (num_heads // num_kv_heads)``).
        value: ``(batch, num_kv_heads, k_len, head_dim)``.
        mask: optional boolean (or 0/1 integer) tensor broadcastable to
            ``(batch, num_heads, q_len, k_len)``; ``True`` where the query may attend.
        causal: also forbid attending to later positions (queries are the last ``q_len``
            of the keys).
        scale: multiplier of the scores; ``1/√head_dim`` when ``None``.
        dropout_rate: dropout on the attention weights, applied only when ``training``.
        training: whether dropout is active.
        seed: optional int32 ``(2,)`` tensor for the stateless dropout; random when ``None``.
        return_weights: also return the ``(batch, num_heads, q_len, k_len)`` weights.
        jit_compile: compile with XLA; ``None`` follows :func:`set_jit_compile` (default on).
        sliding_window: with ``causal``, the query at absolute position ``i`` (the queries are
            the last ``q_len`` of the ``k_len`` keys) sees only keys ``i - W < j <= i``
            (Mistral / Qwen2 sliding-window attention; see :func:`causal_mask`). Ignored
            without ``causal``; ``None`` for no window.
        implementation: ``"exact"`` materializes the ``(batch, heads, q_len, k_len)`` scores;
            ``"chunked"`` computes the same function tile by tile in O(seq·head_dim) memory,
            forward and backward (:mod:`keras_transformers.ops.chunked_attention`); ``"auto"``
            (default) is chunked when both lengths are static and ``>= AUTO_CHUNKED_MIN_LENGTH``.
            ``return_weights=True`` always runs the exact form. The chunked form is traced into
            the caller's function (XLA-compiled inside the models' compiled steps), whatever
            ``jit_compile`` says.
        query_block, key_block: tile sizes of the chunked form; ``None`` for the defaults.
        bias: optional float tensor broadcastable to ``(batch, num_heads, q_len, k_len)`` added
            to the scaled scores before masking and softmax (T5's relative position bias,
            :class:`~keras_transformers.layers.RelativePositionBias`); runs the exact form.

    Returns:
        ``(batch, num_heads, q_len, head_dim)`` in ``value``'s dtype, and the float32 weights
        (in ``value``'s dtype) when ``return_weights``.

    Example:
        >>> q = k = v = tf.random.normal([2, 4, 8, 16])
        >>> scaled_dot_product_attention(q, k, v, causal=True).shape
        TensorShape([2, 4, 8, 16])
    """
    query, key, value = (tf.convert_to_tensor(t) for t in (query, key, value))
    for name, tensor in (("query", query), ("key", key), ("value", value)):
        _check_rank(name, tensor, 4)
    if query.shape[-1] is not None and key.shape[-1] is not None and query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"`query` and `key` must share head_dim, got {query.shape[-1]} and {key.shape[-1]}."
        )
    # Checked here because a `value` with fewer heads would broadcast silently in the matmul.
    if not key.shape.is_compatible_with(value.shape):
        raise ValueError(
            f"`value` must have the shape of `key` (batch, num_kv_heads, k_len, head_dim), got "
            f"{value.shape} for a key of shape {key.shape}."
        )
    num_heads, num_kv_heads = query.shape[1], key.shape[1]
    if num_heads is not None and num_kv_heads is not None and num_heads % num_kv_heads:
        raise ValueError(
            f"The number of query heads ({num_heads}) must be a multiple of the number of "
            f"key/value heads ({num_kv_heads})."
        )
    if mask is not None:
        mask = tf.convert_to_tensor(mask)
        if mask.dtype != tf.bool:
            mask = tf.cast(mask, tf.bool)
        if mask.shape.rank is not None and mask.shape.rank > 4:
            raise ValueError(
                f"`mask` must have rank <= 4, broadcastable to (batch, heads, q_len, k_len); "
                f"got shape {mask.shape}."
            )
    if scale is None:
        scale = float(query.shape[-1]) ** -0.5 if query.shape[-1] else tf.math.rsqrt(
            tf.cast(tf.shape(query)[-1], tf.float32))
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"`dropout_rate` must be in [0, 1), got {dropout_rate}.")
    dropout_rate = float(dropout_rate) if training else 0.0
    if dropout_rate > 0.0 and seed is None:
        seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
    if jit_compile is None:
        jit_compile = _jit_compile
    sliding_window = check_sliding_window(sliding_window)
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"`implementation` must be one of {IMPLEMENTATIONS}, got {implementation!r}.")
    query_block = check_block_size("query_block", DEFAULT_QUERY_BLOCK if query_block is None else query_block)
    key_block = check_block_size("key_block", DEFAULT_KEY_BLOCK if key_block is None else key_block)
    if bias is not None:
        bias = tf.convert_to_tensor(bias)
        if bias.shape.rank is not None and bias.shape.rank > 4:
            raise ValueError(f"`bias` must have rank <= 4, broadcastable to (batch, heads, q_len, k_len); "
                             f"got shape {bias.shape}.")
    if _use_chunked(implementation, query, key, return_weights, bias):
        # Traced into the caller's function, not a tf.function of its own: XLA turns the
        # arguments of a nested function whose gradient is custom into compile-time constants.
        return chunked_attention(query * tf.cast(scale, query.dtype), key, value, mask, bool(causal),
                                 sliding_window if causal else None, dropout_rate, seed,
                                 query_block, key_block)
    fn = _attention_xla if jit_compile else _attention
    return fn(query, key, value, mask, bool(causal), scale, dropout_rate, seed, bool(return_weights),
              sliding_window, bias)
