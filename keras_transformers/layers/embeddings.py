"""Token embeddings (with the tied output projection) and the three position encodings
(rotary with RoPE scaling: :mod:`keras_transformers.layers.rope_scaling`)."""

import keras
import numpy as np
import tensorflow as tf

from keras_transformers.layers.quantization import Int8TableMixin, int8_matmul
from keras_transformers.layers.rope_scaling import (
    attention_factor,
    check_rope_scaling,
    dynamic_inverse_frequencies,
    inverse_frequencies,
)
from keras_transformers.ops.checks import check_ids_in_range
from keras_transformers.ops.matmul import matmul_transposed


def _angles(sequence, positions, dim, max_wavelength):
    """``pos · max_wavelength^(-2i/dim)`` for ``i < dim/2``: ``(1 or batch, seq, dim/2)`` float32.

    ``positions`` ``(batch, seq)``, or ``None`` for ``0..seq-1`` with ``seq`` read off axis 1 of
    ``sequence``. The angles of the sinusoidal encoding.
    """
    if positions is None:
        positions = tf.range(tf.shape(sequence)[1])[None, :]
    two_i = np.arange(0, dim, 2, dtype=np.float32)
    inverse_frequency = tf.constant(max_wavelength ** (-two_i / dim))
    return tf.cast(positions, tf.float32)[..., None] * inverse_frequency


@keras.saving.register_keras_serializable(package="keras_transformers")
class TokenEmbedding(Int8TableMixin, keras.layers.Layer):
    """Token embedding table ``E`` of shape ``(vocab_size, hidden_size)``.

    ``call`` looks tokens up, ``E[token_ids]``; :meth:`project` is the tied output
    projection ``h·Eᵀ`` that turns hidden states into vocabulary logits (Press & Wolf, 2017).

    Args:
        vocab_size: number of token ids; ids must lie in ``[0, vocab_size)``.
        hidden_size: width of each embedding vector.
        embeddings_initializer: initializer of the table; normal(0.02) as in BERT / GPT-2.
        scale: multiply looked-up vectors by this (``√hidden_size`` in Vaswani et al.).

    Shapes:
        ``call(token_ids, check_ids=True)``: ``(batch, seq)`` int → ``(batch, seq, hidden_size)``;
        ids outside ``[0, vocab_size)`` raise ``ValueError`` (eagerly) before the lookup.
        ``project``: ``(batch, seq, hidden_size)`` → ``(batch, seq, vocab_size)``.

    Example:
        >>> embedding = TokenEmbedding(vocab_size=100, hidden_size=16)
        >>> hidden = embedding(tf.constant([[1, 2, 3]]))      # (1, 3, 16)
        >>> logits = embedding.project(hidden)                # (1, 3, 100)

    ``quantize("int8")``: ``E`` becomes int8 ``Q`` with one scale per token row,
    ``s_v = max|E[v]|/127``; lookups are ``Q[id]·s_id`` and the head ``(h·Qᵀ)·s``
    (:mod:`keras_transformers.layers.quantization`).
    """

    def __init__(self, vocab_size, hidden_size, embeddings_initializer=None, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)
        self.hidden_size = int(hidden_size)
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer or keras.initializers.RandomNormal(stddev=0.02))
        self.scale = float(scale)

    def build(self, input_shape=None):
        self._build_table((self.vocab_size, self.hidden_size), self.embeddings_initializer)
        self.built = True

    def call(self, token_ids, check_ids=True):
        token_ids = tf.convert_to_tensor(token_ids)
        if check_ids:  # callers that already checked, naming their own input, pass False
            token_ids = check_ids_in_range(token_ids, self.vocab_size, "token_ids")
        vectors = self.rows(token_ids)
        return vectors * self.scale if self.scale != 1.0 else vectors

    def project(self, hidden):
        """Tied output projection: logits ``= hidden · Eᵀ``, ``(..., hidden)`` → ``(..., vocab)``."""
        if self.quantization_mode == "int8":
            return int8_matmul(hidden, self.embeddings, self.embeddings_scale)
        return matmul_transposed(hidden, tf.cast(self.embeddings, hidden.dtype))

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.hidden_size)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size,
                "hidden_size": self.hidden_size, "scale": self.scale,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer)}


@keras.saving.register_keras_serializable(package="keras_transformers")
class PositionEmbedding(Int8TableMixin, keras.layers.Layer):
    """Learned absolute positions (BERT, GPT-2): a trained ``(max_length, hidden)`` table.

    Args:
        max_length: longest sequence the table covers.
        embeddings_initializer: initializer of the table; normal(0.02) by default.

    Shapes:
        ``call(inputs, positions=None)``: ``inputs`` ``(batch, seq, hidden)`` gives the length;
        returns ``(1, seq, hidden)`` for positions ``0..seq-1``, or ``(batch, seq, hidden)``
        for explicit ``positions`` ``(batch, seq)``. Add the result to the token embeddings.

    Example:
        >>> tokens = tf.zeros([2, 10, 32])
        >>> (tokens + PositionEmbedding(max_length=64)(tokens)).shape
        TensorShape([2, 10, 32])
    """

    _table_attr = "position_embeddings"  # int8 with model.quantize: as TokenEmbedding's table

    def __init__(self, max_length, embeddings_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.max_length = int(max_length)
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer or keras.initializers.RandomNormal(stddev=0.02))

    def build(self, inputs_shape):
        self._build_table((self.max_length, inputs_shape[-1]), self.embeddings_initializer)
        self.built = True

    def call(self, inputs, positions=None):
        seq_len = inputs.shape[1]
        if seq_len is not None and seq_len > self.max_length:
            raise ValueError(
                f"Sequence length {seq_len} exceeds max_length={self.max_length} of the "
                f"learned position embedding.")
        if positions is None:
            if self.quantization_mode == "int8":
                return self.rows(tf.range(tf.shape(inputs)[1]))[None]
            return tf.cast(self.position_embeddings, self.compute_dtype)[None, : tf.shape(inputs)[1]]
        positions = check_ids_in_range(tf.convert_to_tensor(positions), self.max_length, "positions",
                                       "max_length", range_name="the position table")
        return self.rows(positions)

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer)}


@keras.saving.register_keras_serializable(package="keras_transformers")
class SinusoidalPositionEncoding(keras.layers.Layer):
    """Fixed sinusoidal positions of Vaswani et al. (2017), section 3.5.

    ``PE(pos, 2i) = sin(pos / max_wavelength^(2i/d))``, ``PE(pos, 2i+1) = cos(pos / max_wavelength^(2i/d))``
    with ``d`` the hidden size (even) and ``max_wavelength = 10000`` in the paper. No weights.

    Shapes:
        ``call(inputs, positions=None)``: as :class:`PositionEmbedding`; returns
        ``(1 or batch, seq, hidden)``.

    Example:
        >>> SinusoidalPositionEncoding()(tf.zeros([1, 5, 8]))[0, 1, 0]   # sin(1)
        <tf.Tensor: shape=(), dtype=float32, numpy=0.84147096>
    """

    def __init__(self, max_wavelength=10000.0, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = float(max_wavelength)

    def build(self, inputs_shape):
        if inputs_shape[-1] % 2:
            raise ValueError(f"Sinusoidal encoding needs an even hidden size, got {inputs_shape[-1]}.")
        self.built = True

    def call(self, inputs, positions=None):
        hidden_size = inputs.shape[-1]
        angles = _angles(inputs, positions, hidden_size, self.max_wavelength)  # (b, seq, d/2)
        encoding = tf.stack([tf.sin(angles), tf.cos(angles)], axis=-1)  # interleave 2i, 2i+1
        encoding = tf.reshape(encoding, tf.concat([tf.shape(angles)[:-1], [hidden_size]], 0))
        return tf.cast(encoding, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "max_wavelength": self.max_wavelength}


@keras.saving.register_keras_serializable(package="keras_transformers")
class RotaryEmbedding(keras.layers.Layer):
    """Rotary position embedding, RoPE (Su et al., 2021), applied to queries and keys.

    Each pair of features ``(x_i, x_{i+d/2})`` of a head is rotated by the angle
    ``pos · ω_i`` with ``ω_i = max_wavelength^(-2i/d)``, so that ``q_m·k_n`` depends on
    the positions only through ``m - n``. The halves pairing ("rotate_half") matches
    GPT-NeoX, Llama in Hugging Face, and KerasHub. No weights.

    Args:
        max_wavelength: the base of the frequencies (``rope_theta``: 10000 in Llama 2,
            500000 in Llama 3).
        scaling: ``None``, or a RoPE scaling dict (``rope_type`` ``linear`` | ``dynamic`` |
            ``llama3`` | ``yarn`` and its keys) that changes ``ω`` for long contexts; the
            formulas are in :mod:`keras_transformers.layers.rope_scaling`. ``yarn`` also
            multiplies the output by its attention factor.

    Shapes:
        ``call(x, positions=None)``: ``x`` ``(batch, heads, seq, head_dim)`` (even head_dim);
        ``positions`` ``(batch, seq)`` or ``None`` for ``0..seq-1``. Returns ``x``'s shape.

    Example:
        >>> q = tf.random.normal([1, 2, 6, 8])
        >>> RotaryEmbedding()(q).shape
        TensorShape([1, 2, 6, 8])
        >>> llama3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        ...           "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
        >>> RotaryEmbedding(500000.0, scaling=llama3)(q).shape
        TensorShape([1, 2, 6, 8])
    """

    def __init__(self, max_wavelength=10000.0, scaling=None, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = float(max_wavelength)
        self.scaling = check_rope_scaling(scaling)
        self.attention_factor = attention_factor(self.scaling)

    def build(self, x_shape):
        dim = x_shape[-1]
        if dim % 2:
            raise ValueError(f"Rotary embedding needs an even head_dim, got {dim}.")
        self.dynamic = self.scaling is not None and self.scaling["rope_type"] == "dynamic"
        self.inverse_frequency = None if self.dynamic else inverse_frequencies(
            self.max_wavelength, dim, self.scaling)
        self.built = True

    def call(self, x, positions=None):
        if positions is None:
            positions = tf.range(tf.shape(x)[2])[None, :]
        positions = tf.cast(positions, tf.float32)
        if self.dynamic:  # the base grows with this call's length: max position + 1
            inverse_frequency = dynamic_inverse_frequencies(
                self.max_wavelength, x.shape[-1], self.scaling, tf.reduce_max(positions) + 1.0)
        else:
            inverse_frequency = tf.constant(self.inverse_frequency)
        angles = positions[..., None] * inverse_frequency                  # (b, seq, d/2)
        angles = tf.concat([angles, angles], axis=-1)[:, None]            # (b, 1, seq, d)
        x32 = tf.cast(x, tf.float32)
        first, second = tf.split(x32, 2, axis=-1)
        rotated_half = tf.concat([-second, first], axis=-1)
        rotated = x32 * tf.cos(angles) + rotated_half * tf.sin(angles)
        if self.attention_factor != 1.0:
            rotated = rotated * self.attention_factor
        return tf.cast(rotated, x.dtype)

    def get_config(self):
        return {**super().get_config(), "max_wavelength": self.max_wavelength, "scaling": self.scaling}
