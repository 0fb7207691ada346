"""What every backbone shares: the embedding stack, then blocks, then (pre-norm) a final norm."""

import keras
import tensorflow as tf

from keras_transformers.layers import (
    PositionEmbedding,
    RelativePositionBias,
    SinusoidalPositionEncoding,
    TokenEmbedding,
    make_norm,
)
from keras_transformers.models.config import TransformerConfig
from keras_transformers.models.remat import rematerialized
from keras_transformers.models.task import ShapeFreeBuild


def as_config(config):
    if isinstance(config, TransformerConfig):
        return config
    if isinstance(config, dict):
        return TransformerConfig.from_dict(config)
    raise ValueError(f"`config` must be a TransformerConfig or a dict, got {type(config).__name__}.")


def kernel_initializer(config):
    return keras.initializers.RandomNormal(stddev=config.initializer_range)


@keras.saving.register_keras_serializable(package="keras_transformers")
class EmbeddingStack(keras.layers.Layer):
    """``x = Dropout(Norm(E[token_ids]·s + P[positions] + S[segment_ids]))``.

    ``s`` is ``√hidden`` with ``scale_embeddings`` (Vaswani et al.), else 1; ``P`` is learned,
    sinusoidal, or absent (rotary positions live in attention); ``S`` exists when
    ``type_vocab_size > 0``; ``Norm`` only with ``embedding_norm``.

    Args:
        config: a :class:`TransformerConfig` (or its dict).
        token_embedding: share this :class:`TokenEmbedding` (seq2seq encoder and decoder).

    Shapes: ``token_ids`` ``(batch, seq)`` → ``(batch, seq, hidden)``.
    """

    def __init__(self, config, token_embedding=None, **kwargs):
        super().__init__(**kwargs)
        self.config = as_config(config)
        c = self.config
        self.token_embedding = token_embedding or TokenEmbedding(
            c.vocab_size, c.hidden_size, embeddings_initializer=kernel_initializer(c),
            scale=c.hidden_size ** 0.5 if c.scale_embeddings else 1.0,
            name="token_embedding", dtype=self.dtype_policy)
        self.position_embedding = None
        if c.position_encoding == "learned":
            self.position_embedding = PositionEmbedding(
                c.max_length, embeddings_initializer=kernel_initializer(c),
                name="position_embedding", dtype=self.dtype_policy)
        elif c.position_encoding == "sinusoidal":
            self.position_embedding = SinusoidalPositionEncoding(
                name="position_encoding", dtype=self.dtype_policy)
        self.segment_embedding = None
        if c.type_vocab_size:
            self.segment_embedding = TokenEmbedding(
                c.type_vocab_size, c.hidden_size, embeddings_initializer=kernel_initializer(c),
                name="segment_embedding", dtype=self.dtype_policy)
        self.norm = make_norm(c.norm_type, c.norm_epsilon, "embedding_norm",
                              dtype=self.dtype_policy) if c.embedding_norm else None
        self.dropout = keras.layers.Dropout(c.dropout, dtype=self.dtype_policy)

    def build(self, token_ids_shape):
        hidden_shape = (*token_ids_shape, self.config.hidden_size)
        for layer in (self.token_embedding, self.segment_embedding):
            if layer is not None and not layer.built:
                layer.build(token_ids_shape)
        for layer in (self.position_embedding, self.norm):
            if layer is not None:
                layer.build(hidden_shape)
        self.built = True

    def call(self, token_ids, segment_ids=None, positions=None, training=None):
        # The backbones check ids against the vocabularies, naming their input keys, before this.
        x = self.token_embedding(token_ids, check_ids=False)
        if self.position_embedding is not None:
            x = x + self.position_embedding(x, positions=positions)
        if self.segment_embedding is not None:
            if segment_ids is None:
                segment_ids = tf.zeros_like(token_ids)
            x = x + self.segment_embedding(segment_ids, check_ids=False)
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x, training=training)

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}


def block_arguments(config):
    """The keyword arguments of EncoderBlock / DecoderBlock that a config determines."""
    return dict(
        num_heads=config.num_heads, intermediate_size=config.intermediate_size,
        num_key_value_heads=config.key_value_heads, head_dim=config.head_dim, activation=config.activation,
        norm_first=config.norm_first, norm_type=config.norm_type, norm_epsilon=config.norm_epsilon,
        dropout=config.dropout, attention_dropout=config.attention_dropout, use_bias=config.use_bias,
        rotary_max_wavelength=config.rope_max_wavelength if config.position_encoding == "rotary" else None,
        kernel_initializer=kernel_initializer(config), qkv_bias=config.qkv_bias,
        rope_scaling=config.rope_scaling if config.position_encoding == "rotary" else None,
        sliding_window=config.sliding_window, attention_implementation=config.attention_implementation,
        num_experts=config.num_experts, experts_per_token=config.experts_per_token,
        router_aux_loss_weight=config.router_aux_loss_weight, attention_scale=config.attention_scale)


class Backbone(ShapeFreeBuild, keras.Model):
    """``EmbeddingStack`` → ``num_blocks`` blocks → final norm (pre-norm configs only).

    Pre-norm blocks leave their residual stream unnormalized, so the stack ends with one more
    norm (GPT-2's ``ln_f``, Llama's ``norm``); post-norm blocks end normalized already.
    With ``position_encoding="relative"`` (T5) the stack owns one
    :class:`RelativePositionBias` whose bias every block's self-attention adds
    (:meth:`position_bias`): bidirectional in an encoder, causal in a decoder.
    Subclasses say which block to stack (:meth:`make_block`) and how to call them.

    Args:
        config: a :class:`TransformerConfig` (or its dict).
        token_embedding: share this :class:`TokenEmbedding` (a seq2seq decoder shares the
            encoder's); such sharing is rebuilt by the model that owns both, not by this config.
    """

    def __init__(self, config, token_embedding=None, **kwargs):
        super().__init__(**kwargs)
        self.config = as_config(config)
        c = self.config
        self.embeddings = EmbeddingStack(c, token_embedding=token_embedding, name="embeddings",
                                         dtype=self.dtype_policy)
        self.blocks = [self.make_block(name=f"block_{i}") for i in range(self.num_blocks)]
        self.relative_position_bias = None
        if c.position_encoding == "relative":
            self.relative_position_bias = RelativePositionBias(
                c.num_heads, c.relative_attention_buckets, c.relative_attention_max_distance,
                bidirectional=self.bidirectional, embeddings_initializer=kernel_initializer(c),
                name="relative_position_bias", dtype=self.dtype_policy)
        self.final_norm = make_norm(c.norm_type, c.norm_epsilon, "final_norm",
                                    dtype=self.dtype_policy) if c.norm_first else None

    bidirectional = True  # whether the blocks' self-attention sees later positions

    @property
    def num_blocks(self):
        return self.config.num_layers

    def make_block(self, name):
        raise NotImplementedError

    def position_bias(self, query_positions, key_length):
        """The ``(batch or 1, heads, q_len, key_length)`` relative position bias of the
        self-attention (``None`` unless ``position_encoding="relative"``); ``query_positions``
        ``(q_len,)`` or ``(batch, q_len)``."""
        if self.relative_position_bias is None:
            return None
        return self.relative_position_bias(query_positions, key_length)

    def build(self, inputs_shape=None):
        self.embeddings.build((None, None))
        hidden_shape = (None, None, self.config.hidden_size)
        for block in self.blocks:
            block.build(hidden_shape)
        if self.relative_position_bias is not None:
            self.relative_position_bias.build()
        if self.final_norm is not None:
            self.final_norm.build(hidden_shape)
        self.built = True

    def call_block(self, block, x, training=None, differentiable=None, **arguments):
        """``block(x, ...)``; with ``config.remat`` in training, its activations are
        recomputed in the backward pass (:func:`rematerialized`) instead of kept."""
        if self.config.remat and training:
            return rematerialized(block, x, differentiable, training=training, **arguments)
        return block(x, training=training, **(differentiable or {}), **arguments)

    def finish(self, x):
        """The final norm of pre-norm stacks; the identity for post-norm ones."""
        return x if self.final_norm is None else self.final_norm(x)

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}


def resolve_backbone(backbone, backbone_class, dtype=None):
    """A task model's backbone: the given model, or a ``backbone_class`` built from a config
    with the task model's ``dtype`` policy (so ``dtype="mixed_bfloat16"`` reaches every layer)."""
    if isinstance(backbone, keras.Model):
        return backbone
    return backbone_class(as_config(backbone), dtype=dtype)
