"""Memory-efficient attention: ``softmax(Q·Kᵀ·scale + M)·V`` one tile of scores at a time.

The exact core (:mod:`keras_transformers.ops.attention`) materializes the whole
``(batch, heads, q_len, k_len)`` score matrix: 12 heads at 16k tokens are 12 GB of float32,
and its gradient needs as much again. This module computes the same function over
``(query_block, key_block)`` tiles (Rabe & Staats, 2021; FlashAttention, Dao et al., 2022;
FlashAttention-2, Dao, 2023), so memory is O(seq · head_dim) in the forward *and* backward pass.

Forward: online softmax. For one block of queries, visit the key blocks ``j`` in turn, keeping
per query row a running max ``m``, a running sum ``l`` and an unnormalized output ``acc``::

    S_j   = Q·K_jᵀ·scale                      (masked entries: -inf)
    m'    = max(m, rowmax(S_j))
    P_j   = exp(S_j - m')                     (rescaled to the new max)
    l     = exp(m - m')·l + rowsum(P_j)
    acc   = exp(m - m')·acc + dropout(P_j)·V_j
    m     = m'
    O     = acc / l,   LSE = m + log(l)       (one number per query row is kept for backward)

Backward (FlashAttention-2): nothing of size ``q_len × k_len`` was saved, so each tile's
weights are recomputed from the log-sum-exp, ``P = exp(S - LSE)``, and with
``D = rowsum(dO ∘ O)`` (which equals ``rowsum(P ∘ dP)``), for every tile::

    dV_j += dropout(P)ᵀ·dO          dP = dropout_backward(dO·V_jᵀ)
    dS    = P ∘ (dP - D)            dQ += dS·K_j,   dK_j += dSᵀ·Q

A row whose keys are all masked has ``l = 0``: its output is zero and ``LSE = +inf`` makes its
recomputed weights (and so its gradients) zero. Tiles that a causal or sliding-window mask
hides entirely are skipped. Statistics are float32 whatever the input dtype (bf16 has 8 bits
of mantissa). Dropout draws each tile's keep mask from ``fold_in(seed, tile index)``, so the
backward pass redraws the same mask; it is a valid dropout but not the exact path's pattern.

Example:
    >>> q = tf.random.normal([1, 4, 1000, 16]); k = v = tf.random.normal([1, 2, 1000, 16])
    >>> chunked_attention(q * 0.25, k, v, causal=True, query_block=256, key_block=256).shape
    TensorShape([1, 4, 1000, 16])
"""

import tensorflow as tf

DEFAULT_QUERY_BLOCK = 512
DEFAULT_KEY_BLOCK = 512


def check_block_size(name, size):
    """``size`` if it is a positive int, else a ``ValueError`` naming ``name``."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"`{name}` must be a positive integer (a tile size), got {size!r}.")
    return size


def _split_blocks(length, block):
    """``(block, num_blocks)``: balanced blocks when ``length`` is static (1,500 → 2 × 750)."""
    if isinstance(length, int):
        num_blocks = -(-length // block)
        return -(-length // num_blocks), num_blocks
    return block, (length + block - 1) // block


def _to_blocks(x, block, num_blocks):
    """``(b, h, [g,] L, d)`` → ``(num_blocks, b, h, [g,] block, d)``, zero-padded along ``L``."""
    rank = x.shape.rank
    pad = [[0, 0]] * (rank - 2) + [[0, num_blocks * block - tf.shape(x)[-2]], [0, 0]]
    x = tf.pad(x, pad)
    x = tf.reshape(x, tf.concat([tf.shape(x)[:-2], [num_blocks, block, tf.shape(x)[-1]]], 0))
    return tf.transpose(x, [rank - 2] + list(range(rank - 2)) + [rank - 1, rank])


def _from_blocks(x, length):
    """Inverse of :func:`_to_blocks`: ``(num_blocks, ..., block, d)`` → ``(..., length, d)``."""
    rank = x.shape.rank
    x = tf.transpose(x, list(range(1, rank - 2)) + [0, rank - 2, rank - 1])
    shape = tf.shape(x)
    x = tf.reshape(x, tf.concat([shape[:-3], [-1], shape[-1:]], 0))
    return x[..., :length, :]


def _grouped_mask(mask, num_heads, num_kv_heads, q_len, k_len, q_pad, k_pad):
    """A bool mask broadcastable to ``(b, heads, q_len, k_len)`` → rank 5 ``(b|1, kv|1, g|1,
    q_pad|1, k_pad|1)``: heads split as the queries are, long axes padded with False."""
    while mask.shape.rank < 4:
        mask = mask[None]
    full = [tf.shape(mask)[0], num_heads, q_len, k_len]
    mask = tf.broadcast_to(mask, [1 if mask.shape[axis] == 1 else full[axis] for axis in range(4)])
    shape = tf.shape(mask)
    if mask.shape[1] == 1:
        mask = mask[:, :, None]
    else:
        mask = tf.reshape(mask, [shape[0], num_kv_heads, num_heads // num_kv_heads, shape[2], shape[3]])
    paddings = [[0, 0]] * 3 + [[0, 0] if mask.shape[axis] == 1 else [0, padded - full[axis - 1]]
                               for axis, padded in ((3, q_pad), (4, k_pad))]
    return tf.pad(mask, paddings, constant_values=False)


def _mask_tile(mask, q_start, q_size, k_start, k_size):
    """The ``(q_size, k_size)`` tile of a :func:`_grouped_mask`, size-1 axes kept as they are."""
    q_begin, q_len = (0, 1) if mask.shape[3] == 1 else (q_start, q_size)
    k_begin, k_len = (0, 1) if mask.shape[4] == 1 else (k_start, k_size)
    return tf.slice(mask, [0, 0, 0, q_begin, k_begin], [-1, -1, -1, q_len, k_len])


class _Tiles:
    """Shapes, tile ranges and per-tile masks shared by the forward and backward passes."""

    def __init__(self, q_len, k_len, q_block, k_block, num_q_blocks, num_k_blocks, mask, causal,
                 sliding_window, dropout_rate, seed):
        self.q_len, self.k_len = q_len, k_len
        self.q_block, self.k_block = q_block, k_block
        self.num_q_blocks, self.num_k_blocks = num_q_blocks, num_k_blocks
        self.offset = k_len - q_len  # queries are the last q_len positions of the keys
        self.mask, self.causal, self.window = mask, causal, sliding_window
        self.dropout_rate, self.seed = dropout_rate, seed

    def key_blocks_of(self, i):
        """``[start, end)`` of the key blocks that query block ``i`` may see."""
        start, end = 0, self.num_k_blocks
        if self.window is not None:
            start = tf.clip_by_value((i * self.q_block + self.offset - self.window + 1) // self.k_block,
                                     0, self.num_k_blocks)
        if self.causal or self.window is not None:
            end = tf.clip_by_value(((i + 1) * self.q_block - 1 + self.offset) // self.k_block + 1,
                                   0, self.num_k_blocks)
        return start, end

    def query_blocks_of(self, j):
        """``[start, end)`` of the query blocks that may see key block ``j``."""
        start, end = 0, self.num_q_blocks
        if self.causal or self.window is not None:
            start = tf.clip_by_value((j * self.k_block - self.offset) // self.q_block, 0, self.num_q_blocks)
        if self.window is not None:
            end = tf.clip_by_value(
                ((j + 1) * self.k_block - 2 + self.window - self.offset + self.q_block) // self.q_block,
                0, self.num_q_blocks)
        return start, end

    def visible(self, i, j):
        """Bool tile ``(.., q_block, k_block)``: key exists, and causal / window / mask allow it."""
        query = (i * self.q_block + tf.range(self.q_block) + self.offset)[:, None]
        key = (j * self.k_block + tf.range(self.k_block))[None, :]
        visible = key < self.k_len
        if self.causal or self.window is not None:
            visible &= key <= query
        if self.window is not None:
            visible &= key > query - self.window
        if self.mask is not None:
            visible &= _mask_tile(self.mask, i * self.q_block, self.q_block, j * self.k_block, self.k_block)
        return visible

    def dropout_scale(self, i, j, shape):
        """``keep / (1 - rate)`` for tile ``(i, j)``: the same numbers forward and backward."""
        seed = tf.random.experimental.stateless_fold_in(self.seed, i * self.num_k_blocks + j)
        keep = tf.random.stateless_uniform(shape, seed=seed) >= self.dropout_rate
        return tf.where(keep, 1.0 / (1.0 - self.dropout_rate), 0.0)


def _einsum(equation, a, b):
    """``tf.einsum`` in ``a``'s dtype, float32 out (statistics stay float32 for bf16 inputs)."""
    return tf.cast(tf.einsum(equation, a, tf.cast(b, a.dtype)), tf.float32)


# Tiles: q, dO ``(b, kv, g, q_block, d)``; k, v ``(b, kv, k_block, d)``;
# S, P ``(b, kv, g, q_block, k_block)``. SCORES: Q·Kᵀ; APPLY: P·V; TRANSPOSED: Pᵀ·dO.
SCORES, APPLY, TRANSPOSED = "bhgqd,bhkd->bhgqk", "bhgqk,bhkd->bhgqd", "bhgqk,bhgqd->bhkd"


def _forward(tiles, q_blocks, k_blocks, v_blocks):
    """Online softmax over key blocks, one query block per map step. → ``(O, LSE)`` blocks."""

    def query_block(args):
        i, q = args
        stats_shape = tf.shape(q)[:-1]
        start, end = tiles.key_blocks_of(i)

        def key_step(j, m, l, acc):
            s = _einsum(SCORES, q, k_blocks[j])
            s = tf.where(tiles.visible(i, j), s, -float("inf"))
            m_new = tf.maximum(m, tf.reduce_max(s, axis=-1))
            m_safe = tf.where(tf.math.is_finite(m_new), m_new, 0.0)  # all masked so far
            p = tf.exp(s - m_safe[..., None])
            correction = tf.exp(m - m_safe)
            l = correction * l + tf.reduce_sum(p, axis=-1)
            if tiles.dropout_rate > 0.0:
                p *= tiles.dropout_scale(i, j, tf.shape(p))
            acc = correction[..., None] * acc + _einsum(APPLY, tf.cast(p, v_blocks.dtype), v_blocks[j])
            return j + 1, m_new, l, acc

        initial = (start, tf.fill(stats_shape, -float("inf")), tf.zeros(stats_shape),
                   tf.zeros(tf.shape(q), tf.float32))
        _, m, l, acc = tf.while_loop(lambda j, *_: j < end, key_step, initial)
        out = tf.where(l[..., None] > 0.0, acc / tf.maximum(l, 1e-30)[..., None], 0.0)
        lse = tf.where(l > 0.0, m + tf.math.log(tf.maximum(l, 1e-30)), float("inf"))
        return out, lse

    indices = tf.range(tiles.num_q_blocks)
    return tf.map_fn(query_block, (indices, q_blocks), parallel_iterations=1,
                     fn_output_signature=(tf.float32, tf.float32))


def _backward(tiles, q_blocks, k_blocks, v_blocks, lse_blocks, do_blocks, d_blocks):
    """FlashAttention-2 backward: per key block, accumulate dK, dV over its query blocks."""
    num_k_blocks = tiles.num_k_blocks

    def key_block(j, dq, dk_array, dv_array):
        k, v = k_blocks[j], v_blocks[j]
        start, end = tiles.query_blocks_of(j)

        def query_step(i, dq, dk, dv):
            q, do = q_blocks[i], do_blocks[i]
            s = _einsum(SCORES, q, k)
            s = tf.where(tiles.visible(i, j), s, -float("inf"))
            p = tf.exp(s - lse_blocks[i][..., None])
            dp = _einsum(SCORES, do, v)
            p_dropped = p
            if tiles.dropout_rate > 0.0:
                scale = tiles.dropout_scale(i, j, tf.shape(p))
                p_dropped, dp = p * scale, dp * scale
            ds = p * (dp - d_blocks[i][..., None])
            dv += _einsum(TRANSPOSED, p_dropped, do)
            dk += _einsum(TRANSPOSED, ds, q)
            dq = tf.tensor_scatter_nd_add(dq, [[i]], _einsum(APPLY, ds, k)[None])
            return i + 1, dq, dk, dv

        zeros = tf.zeros(tf.shape(k), tf.float32)
        _, dq, dk, dv = tf.while_loop(lambda i, *_: i < end, query_step, (start, dq, zeros, zeros))
        return j + 1, dq, dk_array.write(j, dk), dv_array.write(j, dv)

    arrays = [tf.TensorArray(tf.float32, size=num_k_blocks, element_shape=k_blocks.shape[1:])
              for _ in range(2)]
    _, dq, dk, dv = tf.while_loop(lambda j, *_: j < num_k_blocks, key_block,
                                  (0, tf.zeros(tf.shape(q_blocks), tf.float32), *arrays))
    return dq, dk.stack(), dv.stack()


def chunked_attention(query, key, value, mask=None, causal=False, sliding_window=None,
                      dropout_rate=0.0, seed=None, query_block=DEFAULT_QUERY_BLOCK,
                      key_block=DEFAULT_KEY_BLOCK):
    """``softmax(Q·Kᵀ + M)·V`` in tiles (module docstring), differentiable in O(seq·head_dim).

    Args:
        query: ``(batch, num_heads, q_len, head_dim)``, already multiplied by the scale.
        key, value: ``(batch, num_kv_heads, k_len, head_dim)``; query head ``h`` uses KV head
            ``h // (num_heads // num_kv_heads)``.
        mask: bool, broadcastable to ``(batch, num_heads, q_len, k_len)``; True = may attend.
        causal: queries (the last ``q_len`` positions) see keys at or before their own.
        sliding_window: query at position ``i`` sees keys ``j`` with ``i - window < j <= i``.
        dropout_rate, seed: dropout on the weights; ``seed`` an int32 ``(2,)`` tensor.
        query_block, key_block: tile sizes (Python ints).

    Returns: ``(batch, num_heads, q_len, head_dim)`` in ``value``'s dtype.
    """
    check_block_size("query_block", query_block)
    check_block_size("key_block", key_block)
    q_len_static, k_len_static = query.shape[2], key.shape[2]
    q_len = q_len_static if q_len_static is not None else tf.shape(query)[2]
    k_len = k_len_static if k_len_static is not None else tf.shape(key)[2]
    q_block, num_q_blocks = _split_blocks(q_len, query_block)
    k_block, num_k_blocks = _split_blocks(k_len, key_block)
    batch, num_heads, head_dim = tf.shape(query)[0], tf.shape(query)[1], tf.shape(query)[3]
    num_kv_heads = tf.shape(key)[1]
    group = num_heads // num_kv_heads
    if mask is not None:
        mask = _grouped_mask(mask, num_heads, num_kv_heads, q_len, k_len,
                             num_q_blocks * q_block, num_k_blocks * k_block)
    tiles = _Tiles(q_len, k_len, q_block, k_block, num_q_blocks, num_k_blocks, mask, causal,
                   sliding_window, float(dropout_rate), seed)
    grouped_shape = [batch, num_kv_heads, group, q_len, head_dim]

    @tf.custom_gradient
    def attend(q, k, v):
        q_blocks = _to_blocks(tf.reshape(q, grouped_shape), q_block, num_q_blocks)
        k_blocks, v_blocks = (_to_blocks(t, k_block, num_k_blocks) for t in (k, v))
        out_blocks, lse_blocks = _forward(tiles, q_blocks, k_blocks, v_blocks)
        out = _from_blocks(out_blocks, q_len)

        def grad(d_out):
            d_out = tf.reshape(tf.cast(d_out, tf.float32), grouped_shape)
            d_rows = _to_blocks(tf.reduce_sum(d_out * out, axis=-1)[..., None], q_block, num_q_blocks)[..., 0]
            as_f32 = (tf.cast(t, tf.float32) for t in (q_blocks, k_blocks, v_blocks))
            dq, dk, dv = _backward(tiles, *as_f32, lse_blocks,
                                   _to_blocks(d_out, q_block, num_q_blocks), d_rows)
            dq = tf.reshape(_from_blocks(dq, q_len), tf.shape(q))
            return (tf.cast(dq, q.dtype), tf.cast(_from_blocks(dk, k_len), k.dtype),
                    tf.cast(_from_blocks(dv, k_len), v.dtype))

        return tf.cast(tf.reshape(out, tf.shape(q)), value.dtype), grad

    return attend(query, key, value)
