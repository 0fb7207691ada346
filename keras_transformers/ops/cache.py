"""The key/value cache of incremental decoding: a fixed-size buffer per layer, written in place.

A cache holds the keys (or values) of one attention layer, ``(batch, kv_heads, cache_length,
head_dim)``, allocated once for the prompt plus every new token. Each row writes its new
entries at its own *slots* (the positions of its tokens), so prompts of different lengths
decode side by side. The write is ``tf.tensor_scatter_nd_update``: XLA updates the buffer in
place inside the decode loop, and tf2onnx converts it to ONNX ``ScatterND`` (the
``XlaDynamicUpdateSlice`` that ``keras.ops.slice_update`` becomes has no ONNX conversion).
"""

import tensorflow as tf


def update_cache(cache, updates, slots):
    """Write ``updates`` into ``cache`` at per-row ``slots``; returns the updated cache.

    Args:
        cache: ``(batch, heads, cache_length, head_dim)``.
        updates: ``(batch, heads, q_len, head_dim)``, the new keys or values.
        slots: ``(batch, q_len)`` int, where row ``b``'s ``q``-th update goes; in
            ``[0, cache_length)``.

    Returns:
        ``cache`` with ``cache[b, h, slots[b, q]] = updates[b, h, q]``.

    Example:
        >>> cache = tf.zeros([2, 1, 4, 3])
        >>> update_cache(cache, tf.ones([2, 1, 1, 3]), tf.constant([[0], [2]]))[:, 0, :, 0]
        <tf.Tensor: shape=(2, 4), dtype=float32, numpy=
        array([[1., 0., 0., 0.],
               [0., 0., 1., 0.]], dtype=float32)>
    """
    slots = tf.cast(slots, tf.int32)
    shape = tf.shape(updates)[:3]  # batch, heads, q_len
    batch_index = tf.broadcast_to(tf.range(shape[0])[:, None, None], shape)
    head_index = tf.broadcast_to(tf.range(shape[1])[None, :, None], shape)
    slot_index = tf.broadcast_to(slots[:, None, :], shape)
    indices = tf.stack([batch_index, head_index, slot_index], axis=-1)  # (batch, heads, q_len, 3)
    return tf.tensor_scatter_nd_update(cache, indices, tf.cast(updates, cache.dtype))


def cache_causal_mask(query_slots, cache_length, sliding_window=None):
    """Causal mask over a cache: the query at slot ``s`` sees slots ``<= s``.

    With ``sliding_window=W`` it sees only slots ``s - W < slot <= s``, the mask
    :func:`~keras_transformers.ops.causal_mask` gives a full recompute. The cache still
    keeps every slot (it is not a rolling buffer of ``W`` entries): older keys are masked,
    not evicted, so decoding past ``W`` tokens equals the recompute exactly, at the memory
    of a full-length cache.

    Args:
        query_slots: ``(batch, q_len)`` int, the cache slot (= position) of each query.
        cache_length: number of slots.
        sliding_window: positive int, or ``None`` for no window.

    Returns:
        ``(batch, 1, q_len, cache_length)`` bool, broadcastable over heads. Slots after a
        query, written or not, are hidden from it.
    """
    slots = tf.range(cache_length)[None, None, None, :]
    query_slots = tf.cast(query_slots, tf.int32)[:, None, :, None]
    visible = slots <= query_slots
    if sliding_window is not None:
        visible = tf.logical_and(visible, slots > query_slots - sliding_window)
    return visible
