"""T5's relative position bias: a learned scalar per head and per bucket of key - query offset."""

import math

import keras
import tensorflow as tf


def relative_position_bucket(relative_position, bidirectional, num_buckets=32, max_distance=128):
    """The bucket of each offset ``relative_position = key_position - query_position``.

    Raffel et al., 2020 (T5), section 2.1: offsets are bucketed, exactly for small ones and
    logarithmically for large ones, the same for all offsets beyond ``max_distance``:

    * ``bidirectional`` (the encoder): half the buckets for keys after the query
      (``n > 0``), half for keys at or before it; ``B = num_buckets / 2``, ``d = |n|``.
      Causal (the decoder): only keys at or before the query count; ``B = num_buckets``,
      ``d = max(-n, 0)``.
    * with ``e = B / 2``: ``bucket(d) = d`` when ``d < e``, else
      ``min(e + ⌊log(d / e) / log(max_distance / e) · (B - e)⌋, B - 1)``; bidirectional
      adds ``B`` for ``n > 0``.

    Args:
        relative_position: int tensor of offsets, any shape.
        bidirectional: the encoder's buckets (True) or the decoder's (False).
        num_buckets: buckets in all (T5: 32).
        max_distance: offsets this far or farther share the last bucket (T5: 128).

    Returns: int32 buckets in ``[0, num_buckets)``, ``relative_position``'s shape.

    Example:
        >>> relative_position_bucket(tf.constant([-3, 0, 3, 200]), bidirectional=True).numpy()
        array([ 3,  0, 19, 31], dtype=int32)
    """
    n = tf.cast(relative_position, tf.int32)
    buckets = tf.zeros_like(n)
    if bidirectional:
        num_buckets //= 2
        buckets += tf.cast(n > 0, tf.int32) * num_buckets
        distance = tf.abs(n)
    else:
        distance = tf.maximum(-n, 0)
    max_exact = num_buckets // 2
    # log() of the large distances only (a distance below max_exact is its own bucket).
    large = tf.cast(tf.maximum(distance, max_exact), tf.float32)
    log_bucket = max_exact + tf.cast(
        tf.math.log(large / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact),
        tf.int32)
    log_bucket = tf.minimum(log_bucket, num_buckets - 1)
    return buckets + tf.where(distance < max_exact, distance, log_bucket)


@keras.saving.register_keras_serializable(package="keras_transformers")
class RelativePositionBias(keras.layers.Layer):
    """T5's attention bias ``B[h, i, j] = b[bucket(j - i), h]`` (Raffel et al., 2020).

    T5 has no position embeddings: each attention head adds a learned scalar to the score
    of query ``i`` and key ``j`` that depends on their offset's bucket
    (:func:`relative_position_bucket`). One table serves every block of a stack (T5 keeps it
    in the first block and reuses it); the encoder's buckets are bidirectional, the decoder's
    causal, and cross-attention has none.

    Args:
        num_heads: attention heads ``h``.
        num_buckets: offset buckets (T5: 32).
        max_distance: offsets at least this far share the last bucket (T5: 128).
        bidirectional: the encoder's buckets (True) or the causal decoder's (False).
        embeddings_initializer: initializer of the ``(num_buckets, num_heads)`` table.

    Call args:
        query_positions: ``(batch, q_len)`` int positions of the queries (with a decoding
            cache, their cache slots), or ``(q_len,)``.
        key_length: the number of keys, at positions ``0 .. key_length - 1``.

    Returns: the float bias ``(batch, num_heads, q_len, key_length)`` (batch 1 for 1-D
    ``query_positions``), for :func:`~keras_transformers.ops.scaled_dot_product_attention`'s ``bias``.

    Example:
        >>> bias = RelativePositionBias(num_heads=4)
        >>> bias(tf.range(5), key_length=5).shape
        TensorShape([1, 4, 5, 5])
    """

    def __init__(self, num_heads, num_buckets=32, max_distance=128, bidirectional=True,
                 embeddings_initializer="uniform", **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.num_buckets = int(num_buckets)
        self.max_distance = int(max_distance)
        self.bidirectional = bool(bidirectional)
        minimum = 4 if self.bidirectional else 2  # at least two exact buckets per direction
        if self.num_buckets < minimum:
            raise ValueError(f"`num_buckets` must be >= {minimum}, got {num_buckets}.")
        if self.max_distance <= self.num_buckets // (4 if self.bidirectional else 2):
            raise ValueError(f"`max_distance` ({max_distance}) must exceed the exact buckets' range "
                             f"({self.num_buckets // (4 if self.bidirectional else 2)}).")
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(name="embeddings", shape=(self.num_buckets, self.num_heads),
                                          initializer=self.embeddings_initializer)
        self.built = True

    def call(self, query_positions, key_length):
        query_positions = tf.cast(query_positions, tf.int32)
        if query_positions.shape.rank == 1:
            query_positions = query_positions[None, :]
        key_positions = tf.range(key_length, dtype=tf.int32)
        buckets = relative_position_bucket(key_positions[None, None, :] - query_positions[:, :, None],
                                           self.bidirectional, self.num_buckets, self.max_distance)
        bias = tf.gather(tf.convert_to_tensor(self.embeddings), buckets)  # (batch, q, k, heads)
        return tf.transpose(bias, [0, 3, 1, 2])

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "num_buckets": self.num_buckets,
                "max_distance": self.max_distance, "bidirectional": self.bidirectional,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer)}
