"""EncoderBlock and DecoderBlock: attention + feed-forward, each in a residual, pre- or post-norm."""

import keras
import tensorflow as tf

from keras_transformers.layers.attention import MultiHeadAttention
from keras_transformers.layers.feedforward import FeedForward
from keras_transformers.layers.moe import MixtureOfExperts
from keras_transformers.layers.normalization import make_norm


def padding_attention_mask(padding_mask):
    """``(batch, k_len)`` padding mask (1 = real token) → ``(batch, 1, 1, k_len)`` bool mask."""
    if padding_mask is None:
        return None
    return tf.cast(padding_mask, tf.bool)[:, None, None, :]


class _Block(keras.layers.Layer):
    """What both blocks share: the arguments, the residual wiring, and the config."""

    def __init__(self, num_heads, intermediate_size, num_key_value_heads=None, head_dim=None,
                 activation="gelu", norm_first=False, norm_type="layer_norm", norm_epsilon=1e-5,
                 dropout=0.0, attention_dropout=0.0, use_bias=True, rotary_max_wavelength=None,
                 kernel_initializer="glorot_uniform", qkv_bias=None, rope_scaling=None,
                 sliding_window=None, attention_implementation="auto", num_experts=None, experts_per_token=2,
                 router_aux_loss_weight=0.02, attention_scale=None, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.intermediate_size = int(intermediate_size)
        self.num_key_value_heads = int(num_key_value_heads or num_heads)
        self.head_dim = None if head_dim is None else int(head_dim)
        self.activation = activation
        self.norm_first = bool(norm_first)
        self.norm_type = norm_type
        self.norm_epsilon = float(norm_epsilon)
        self.dropout = float(dropout)
        self.attention_dropout = float(attention_dropout)
        self.use_bias = bool(use_bias)
        self.rotary_max_wavelength = rotary_max_wavelength
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.qkv_bias = None if qkv_bias is None else bool(qkv_bias)
        self.rope_scaling = rope_scaling
        self.sliding_window = sliding_window
        self.attention_implementation = attention_implementation
        self.num_experts = None if num_experts is None else int(num_experts)
        self.experts_per_token = int(experts_per_token)
        self.router_aux_loss_weight = float(router_aux_loss_weight)
        self.attention_scale = None if attention_scale is None else float(attention_scale)

    def _attention(self, name, query_shape, key_value_shape=None, rotary=True):
        """``rotary=False`` (cross-attention): no RoPE and no sliding window."""
        head_dim = self.head_dim or query_shape[-1] // self.num_heads
        layer = MultiHeadAttention(
            self.num_heads, head_dim, num_key_value_heads=self.num_key_value_heads,
            use_bias=self.use_bias, dropout=self.attention_dropout,
            rotary_max_wavelength=self.rotary_max_wavelength if rotary else None,
            kernel_initializer=self.kernel_initializer, qkv_bias=self.qkv_bias,
            rope_scaling=self.rope_scaling if rotary else None,
            sliding_window=self.sliding_window if rotary else None,
            attention_implementation=self.attention_implementation, scale=self.attention_scale,
            name=name, dtype=self.dtype_policy)
        layer.build(query_shape, key_value_shape)
        return layer

    def _norm(self, name, shape):
        layer = make_norm(self.norm_type, self.norm_epsilon, name, dtype=self.dtype_policy)
        layer.build(shape)
        return layer

    def _build_feedforward(self, shape):
        if self.num_experts:  # Mixtral: E SwiGLU experts, k per token
            self.feedforward = MixtureOfExperts(
                self.intermediate_size, num_experts=self.num_experts, experts_per_token=self.experts_per_token,
                router_aux_loss_weight=self.router_aux_loss_weight, kernel_initializer=self.kernel_initializer,
                name="feedforward", dtype=self.dtype_policy)
        else:
            self.feedforward = FeedForward(
                self.intermediate_size, activation=self.activation, use_bias=self.use_bias,
                dropout=self.dropout, kernel_initializer=self.kernel_initializer,
                name="feedforward", dtype=self.dtype_policy)
        self.feedforward.build(shape)
        self.feedforward_norm = self._norm("feedforward_norm", shape)
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)

    def _feedforward(self, x, padding_mask, training):
        """The feed-forward sublayer; a mixture of experts also takes the ``(batch, seq)``
        padding mask (padding counts in none of its router statistics)."""
        if self.num_experts:
            return self.feedforward(x, padding_mask=padding_mask, training=training)
        return self.feedforward(x, training=training)

    def _residual(self, x, sublayer, norm, training):
        """Post-norm: ``norm(x + sublayer(x))`` (Vaswani et al.). Pre-norm: ``x + sublayer(norm(x))``."""
        if self.norm_first:
            return x + self.dropout_layer(sublayer(norm(x)), training=training)
        return norm(x + self.dropout_layer(sublayer(x), training=training))

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads,
                "intermediate_size": self.intermediate_size,
                "num_key_value_heads": self.num_key_value_heads, "head_dim": self.head_dim,
                "activation": self.activation, "norm_first": self.norm_first,
                "norm_type": self.norm_type, "norm_epsilon": self.norm_epsilon,
                "dropout": self.dropout, "attention_dropout": self.attention_dropout,
                "use_bias": self.use_bias, "rotary_max_wavelength": self.rotary_max_wavelength,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "qkv_bias": self.qkv_bias, "rope_scaling": self.rope_scaling,
                "sliding_window": self.sliding_window,
                "attention_implementation": self.attention_implementation, "num_experts": self.num_experts,
                "experts_per_token": self.experts_per_token,
                "router_aux_loss_weight": self.router_aux_loss_weight,
                "attention_scale": self.attention_scale}


@keras.saving.register_keras_serializable(package="keras_transformers")
class EncoderBlock(_Block):
    """One encoder layer: bidirectional self-attention, then a feed-forward network.

    Post-norm (Vaswani et al., BERT)::

        x = Norm(x + Dropout(SelfAttention(x)))
        x = Norm(x + Dropout(FFN(x)))

    Pre-norm (``norm_first=True``; GPT-2, Llama)::

        x = x + Dropout(SelfAttention(Norm(x)))
        x = x + Dropout(FFN(Norm(x)))

    Args:
        num_heads: attention heads.
        intermediate_size: width of the feed-forward hidden layer.
        num_key_value_heads: key/value heads (grouped-query attention); ``num_heads`` if None.
        head_dim: width of each head; ``hidden / num_heads`` if None.
        activation: ``relu`` | ``gelu`` | ``gelu_approximate`` | ``swiglu`` | ``geglu``.
        norm_first: pre-norm when True, post-norm when False.
        norm_type: ``layer_norm`` | ``rms_norm``.
        norm_epsilon: epsilon of the norms.
        dropout: dropout on each sublayer's output and inside the feed-forward network.
        attention_dropout: dropout on the attention weights.
        use_bias: biases in the projections.
        rotary_max_wavelength: RoPE base in self-attention; ``None`` for no rotary positions.
        qkv_bias: biases on query/key/value only (Qwen2); ``use_bias`` when ``None``.
        rope_scaling: RoPE scaling dict of self-attention (see :class:`RotaryEmbedding`).
        sliding_window: causal self-attention sees the ``W`` most recent positions (Mistral).
        attention_implementation: ``auto`` | ``exact`` | ``chunked`` (see :class:`MultiHeadAttention`).
        num_experts: a :class:`MixtureOfExperts` feed-forward of this many SwiGLU experts (Mixtral);
            ``None``: the dense :class:`FeedForward`.
        experts_per_token, router_aux_loss_weight: the mixture's ``k`` and load-balancing weight.
        attention_scale: multiplier of the attention scores; ``1/√head_dim`` when None (T5: 1.0).

    Call args:
        sequence: ``(batch, seq, hidden)``.
        padding_mask: ``(batch, seq)``, 1/True for real tokens; padded keys are never attended.
        positions: ``(batch, seq)`` positions for rotary embeddings.
        attention_bias: ``(batch or 1, heads, seq, seq)`` added to the self-attention scores
            (T5's :class:`RelativePositionBias`, computed once per stack); ``None`` for none.

    Returns: ``(batch, seq, hidden)``.

    Example:
        >>> block = EncoderBlock(num_heads=4, intermediate_size=64)
        >>> block(tf.zeros([2, 7, 32]), padding_mask=tf.ones([2, 7])).shape
        TensorShape([2, 7, 32])
    """

    def build(self, sequence_shape):
        self.self_attention = self._attention("self_attention", sequence_shape)
        self.self_attention_norm = self._norm("self_attention_norm", sequence_shape)
        self._build_feedforward(sequence_shape)
        self.built = True

    def call(self, sequence, padding_mask=None, positions=None, attention_bias=None, training=None):
        mask = padding_attention_mask(padding_mask)
        x = self._residual(
            sequence,
            lambda h: self.self_attention(h, attention_mask=mask, positions=positions,
                                          attention_bias=attention_bias, training=training),
            self.self_attention_norm, training)
        return self._residual(x, lambda h: self._feedforward(h, padding_mask, training),
                              self.feedforward_norm, training)


@keras.saving.register_keras_serializable(package="keras_transformers")
class DecoderBlock(_Block):
    """One decoder layer: causal self-attention, optional cross-attention, feed-forward.

    Post-norm (Vaswani et al., BART)::

        x = Norm(x + Dropout(CausalSelfAttention(x)))
        x = Norm(x + Dropout(CrossAttention(x, encoder_sequence)))   # with cross_attention
        x = Norm(x + Dropout(FFN(x)))

    Pre-norm (``norm_first=True``) moves each ``Norm`` onto the sublayer's input.

    Args:
        cross_attention: add the encoder-decoder attention sublayer (seq2seq decoders).
        Others: as :class:`EncoderBlock`.

    Call args:
        sequence: ``(batch, seq, hidden)`` decoder states.
        padding_mask: ``(batch, seq)`` decoder padding mask.
        encoder_sequence: ``(batch, src_seq, enc_hidden)``, required with cross-attention.
        encoder_padding_mask: ``(batch, src_seq)``.
        positions: ``(batch, seq)`` positions for rotary embeddings.
        cache: ``(keys, values)`` self-attention cache for incremental decoding, each
            ``(batch, kv_heads, cache_length, head_dim)``; see :class:`MultiHeadAttention`.
            ``padding_mask`` is then over the cache's slots (or ``None``).
        cache_index: ``(batch, seq)`` cache slots (= positions) of this call's tokens.
        cross_attention_cache: the cross-attention ``(keys, values)`` of the encoder output,
            computed once by ``cross_attention_layer.key_values``; replaces ``encoder_sequence``.
        attention_bias: added to the causal self-attention's scores, ``(batch or 1, heads,
            seq, seq or cache_length)`` (T5); cross-attention takes none.

    Returns: ``(batch, seq, hidden)``; output ``t`` depends only on inputs ``<= t``. With
    ``cache``, a tuple of that and the updated cache.

    Example:
        >>> block = DecoderBlock(num_heads=4, intermediate_size=64, cross_attention=True)
        >>> block(tf.zeros([2, 5, 32]), encoder_sequence=tf.zeros([2, 9, 32])).shape
        TensorShape([2, 5, 32])
    """

    def __init__(self, num_heads, intermediate_size, cross_attention=False, **kwargs):
        super().__init__(num_heads, intermediate_size, **kwargs)
        self.cross_attention = bool(cross_attention)

    def build(self, sequence_shape, encoder_sequence_shape=None):
        self.self_attention = self._attention("self_attention", sequence_shape)
        self.self_attention_norm = self._norm("self_attention_norm", sequence_shape)
        if self.cross_attention:
            if encoder_sequence_shape is None:  # e.g. built from config before any call
                encoder_sequence_shape = sequence_shape
            self.cross_attention_layer = self._attention(
                "cross_attention", sequence_shape, encoder_sequence_shape, rotary=False)
            self.cross_attention_norm = self._norm("cross_attention_norm", sequence_shape)
        self._build_feedforward(sequence_shape)
        self.built = True

    def call(self, sequence, padding_mask=None, encoder_sequence=None, encoder_padding_mask=None,
             positions=None, cache=None, cache_index=None, cross_attention_cache=None,
             attention_bias=None, training=None):
        mask = padding_attention_mask(padding_mask)
        new_cache = []

        def self_attention(h):
            outputs = self.self_attention(h, attention_mask=mask, causal=True, positions=positions,
                                          cache=cache, cache_index=cache_index,
                                          attention_bias=attention_bias, training=training)
            if cache is None:
                return outputs
            outputs, layer_cache = outputs
            new_cache.append(layer_cache)
            return outputs

        x = self._residual(sequence, self_attention, self.self_attention_norm, training)
        if self.cross_attention:
            if encoder_sequence is None and cross_attention_cache is None:
                raise ValueError("This DecoderBlock has cross-attention: pass `encoder_sequence` "
                                 "(or its keys/values as `cross_attention_cache`).")
            encoder_mask = padding_attention_mask(encoder_padding_mask)

            def cross_attention(h):
                outputs = self.cross_attention_layer(
                    h, key_value=encoder_sequence, attention_mask=encoder_mask,
                    cache=cross_attention_cache, training=training)
                return outputs if cross_attention_cache is None else outputs[0]

            x = self._residual(x, cross_attention, self.cross_attention_norm, training)
        token_mask = padding_mask if cache is None else None  # with a cache: the mask is over slots
        x = self._residual(x, lambda h: self._feedforward(h, token_mask, training),
                           self.feedforward_norm, training)
        return x if cache is None else (x, new_cache[0])

    def get_config(self):
        return {**super().get_config(), "cross_attention": self.cross_attention}
