"""The decoder-only backbone (GPT / Llama family) and the causal language model."""

import keras
import tensorflow as tf

from keras_transformers.layers import DecoderBlock, make_norm
from keras_transformers.models.embedding_stack import (
    EmbeddingStack,
    as_config,
    block_arguments,
    kernel_initializer,
)
from keras_transformers.models.encoder import _resolve_backbone
from keras_transformers.models.inputs import check_inputs
from keras_transformers.models.task import (
    ShapeFreeBuild,
    TaskModel,
    deserialize_backbone,
    padding_weights,
    serialize_backbone,
)


@keras.saving.register_keras_serializable(package="keras_transformers")
class Decoder(ShapeFreeBuild, keras.Model):
    """Causal transformer decoder: embeddings, then ``num_layers`` DecoderBlocks (no cross-attention).

    Inputs: a dict with ``token_ids`` ``(batch, seq)`` and ``padding_mask`` ``(batch, seq)``.
    Output: ``(batch, seq, hidden)``; position ``t`` depends only on tokens ``<= t``.

    Example:
        >>> decoder = Decoder(TransformerConfig.from_preset("tiny", norm_first=True))
        >>> decoder({"token_ids": tf.constant([[5, 6, 7]]), "padding_mask": tf.ones([1, 3])}).shape
        TensorShape([1, 3, 32])
    """

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.config = as_config(config)
        c = self.config
        self.embeddings = EmbeddingStack(c, name="embeddings", dtype=self.dtype_policy)
        self.blocks = [DecoderBlock(**block_arguments(c), name=f"block_{i}", dtype=self.dtype_policy)
                       for i in range(c.num_layers)]
        self.final_norm = make_norm(c.norm_type, c.norm_epsilon, "final_norm",
                                    dtype=self.dtype_policy) if c.norm_first else None

    def build(self, inputs_shape=None):
        self.embeddings.build((None, None))
        hidden_shape = (None, None, self.config.hidden_size)
        for block in self.blocks:
            block.build(hidden_shape)
        if self.final_norm is not None:
            self.final_norm.build(hidden_shape)
        self.built = True

    def call(self, inputs, training=None):
        inputs = check_inputs(inputs, type(self).__name__, ("token_ids", "padding_mask"),
                              max_lengths={"token_ids": self.config.max_length},
                              vocab_sizes={"token_ids": self.config.vocab_size})
        x = self.embeddings(inputs["token_ids"], training=training)
        for block in self.blocks:
            x = block(x, padding_mask=inputs["padding_mask"], training=training)
        return x if self.final_norm is None else self.final_norm(x)

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}


class LanguageModelHead(keras.layers.Layer):
    """Hidden states → float32 vocabulary logits: tied (``h·Eᵀ``) or an untied linear layer."""

    def __init__(self, token_embedding, tie_embeddings, initializer, **kwargs):
        super().__init__(**kwargs)
        self.token_embedding = token_embedding
        self.tie_embeddings = tie_embeddings
        self.projection = None
        if not tie_embeddings:
            self.projection = keras.layers.Dense(token_embedding.vocab_size, use_bias=False,
                                                 kernel_initializer=initializer, name="lm_head",
                                                 dtype=self.dtype_policy)

    def build(self, hidden_shape):
        if self.projection is not None:
            self.projection.build(hidden_shape)
        self.built = True

    def call(self, hidden):
        if self.projection is None:
            logits = self.token_embedding.project(hidden)
        else:
            logits = self.projection(hidden)
        return tf.cast(logits, tf.float32)


@keras.saving.register_keras_serializable(package="keras_transformers")
class CausalLM(TaskModel):
    """Causal language model: a :class:`Decoder` and a language-model head.

    ``p(x_t | x_<t) = softmax(h_t·Eᵀ)`` (tied) or ``softmax(h_t·W)`` (untied).

    Args:
        backbone: a :class:`Decoder`, or a config to build one from.

    Inputs: as :class:`Decoder`. Output: ``(batch, seq, vocab)`` float32 logits.
    Labels for ``fit``: ``(batch, seq)``, the next token at each position; padding weighs 0.

    Example:
        >>> lm = CausalLM(TransformerConfig.from_preset("tiny", norm_first=True))
        >>> lm.compile(optimizer="adam")
        >>> # lm.fit(dataset of ({"token_ids", "padding_mask"}, next_token_ids))
    """

    def __init__(self, backbone, **kwargs):
        super().__init__(**kwargs)
        self.backbone = _resolve_backbone(backbone, Decoder)
        c = self.backbone.config
        self.lm_head = LanguageModelHead(self.backbone.embeddings.token_embedding, c.tie_embeddings,
                                         kernel_initializer(c), name="lm_head", dtype=self.dtype_policy)

    @property
    def config(self):
        return self.backbone.config

    def build(self, inputs_shape=None):
        if not self.backbone.built:  # a deserialized backbone arrives built
            self.backbone.build(inputs_shape)
        self.lm_head.build((None, None, self.config.hidden_size))
        self.built = True

    def call(self, inputs, training=None):
        return self.lm_head(self.backbone(inputs, training=training))

    def token_weights(self, x, y):
        return padding_weights(x["padding_mask"])

    def get_config(self):
        return {**super().get_config(), "backbone": serialize_backbone(self.backbone)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = deserialize_backbone(config["backbone"])
        return cls(**config)
