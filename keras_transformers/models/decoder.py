"""The decoder-only backbone (GPT / Llama family) and the causal language model."""

import keras
import tensorflow as tf

from keras_transformers.layers import DecoderBlock
from keras_transformers.models.backbone import (
    Backbone,
    block_arguments,
    kernel_initializer,
    resolve_backbone,
)
from keras_transformers.models.inputs import check_inputs
from keras_transformers.models.task import TaskModel


@keras.saving.register_keras_serializable(package="keras_transformers")
class Decoder(Backbone):
    """Causal transformer decoder: embeddings, then DecoderBlocks.

    Alone (GPT, Llama) it has ``num_layers`` blocks of causal self-attention. With
    ``cross_attention=True`` (the decoder of :class:`Seq2Seq`) it has ``num_decoder_layers``
    blocks that also attend to an encoder's output.

    Args:
        config: a :class:`TransformerConfig` (or its dict).
        cross_attention: add encoder-decoder attention to every block.
        token_embedding: share this :class:`TokenEmbedding` (the encoder's, in a seq2seq model).

    Inputs: a dict with ``token_ids`` ``(batch, seq)`` and ``padding_mask`` ``(batch, seq)``;
    with cross-attention also ``encoder_sequence`` ``(batch, src_seq, hidden)`` and
    ``encoder_padding_mask`` ``(batch, src_seq)`` as arguments.
    Output: ``(batch, seq, hidden)``; position ``t`` depends only on tokens ``<= t``.

    Example:
        >>> decoder = Decoder(TransformerConfig.from_preset("tiny", norm_first=True))
        >>> decoder({"token_ids": tf.constant([[5, 6, 7]]), "padding_mask": tf.ones([1, 3])}).shape
        TensorShape([1, 3, 32])
    """

    def __init__(self, config, cross_attention=False, token_embedding=None, **kwargs):
        self.cross_attention = bool(cross_attention)
        super().__init__(config, token_embedding=token_embedding, **kwargs)

    @property
    def num_blocks(self):
        return self.config.decoder_layers if self.cross_attention else self.config.num_layers

    def make_block(self, name):
        return DecoderBlock(**block_arguments(self.config), cross_attention=self.cross_attention,
                            name=name, dtype=self.dtype_policy)

    def call(self, inputs, encoder_sequence=None, encoder_padding_mask=None, training=None):
        inputs = check_inputs(inputs, type(self).__name__, ("token_ids", "padding_mask"),
                              max_lengths={"token_ids": self.config.max_length},
                              vocab_sizes={"token_ids": self.config.vocab_size})
        x = self.embeddings(inputs["token_ids"], training=training)
        for block in self.blocks:
            x = block(x, padding_mask=inputs["padding_mask"], encoder_sequence=encoder_sequence,
                      encoder_padding_mask=encoder_padding_mask, training=training)
        return self.finish(x)

    def get_config(self):
        return {**super().get_config(), "cross_attention": self.cross_attention}


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

    labels_padding_mask = "padding_mask"

    def __init__(self, backbone, **kwargs):
        super().__init__(**kwargs)
        self.backbone = resolve_backbone(backbone, Decoder)
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

    def get_config(self):
        return {**super().get_config(), "backbone": keras.saving.serialize_keras_object(self.backbone)}
