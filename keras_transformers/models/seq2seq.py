"""The encoder-decoder model (the original Transformer, BART) with its language-model head."""

import keras

from keras_transformers.layers import DecoderBlock, EncoderBlock, make_norm
from keras_transformers.models.decoder import LanguageModelHead
from keras_transformers.models.embedding_stack import (
    EmbeddingStack,
    as_config,
    block_arguments,
    kernel_initializer,
)
from keras_transformers.models.inputs import check_inputs
from keras_transformers.models.task import TaskModel, padding_weights

ENCODER_KEYS = ("encoder_token_ids", "encoder_padding_mask")
DECODER_KEYS = ("decoder_token_ids", "decoder_padding_mask")


@keras.saving.register_keras_serializable(package="keras_transformers")
class Seq2Seq(TaskModel):
    """Encoder-decoder transformer (Vaswani et al., 2017) with a tied language-model head.

    The encoder reads the source bidirectionally; each decoder block attends causally to the
    target prefix, then to the encoder output (cross-attention). Source and target share
    one token embedding (and the output projection, when ``tie_embeddings``).

    Inputs: a dict with ``encoder_token_ids``, ``encoder_padding_mask`` ``(batch, src_seq)`` and
    ``decoder_token_ids``, ``decoder_padding_mask`` ``(batch, tgt_seq)`` (the target shifted
    right, starting with a start token).
    Output: ``(batch, tgt_seq, vocab)`` float32 logits. Labels for ``fit``: ``(batch, tgt_seq)``,
    the unshifted target; decoder padding weighs 0.

    Example:
        >>> model = Seq2Seq(TransformerConfig.from_preset("tiny"))
        >>> model.compile(optimizer="adam")
    """

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.config = as_config(config)
        c = self.config
        self.encoder_embeddings = EmbeddingStack(c, name="encoder_embeddings", dtype=self.dtype_policy)
        token_embedding = self.encoder_embeddings.token_embedding
        self.decoder_embeddings = EmbeddingStack(c, token_embedding=token_embedding,
                                                 name="decoder_embeddings", dtype=self.dtype_policy)
        self.encoder_blocks = [EncoderBlock(**block_arguments(c), name=f"encoder_block_{i}",
                                            dtype=self.dtype_policy) for i in range(c.num_layers)]
        self.decoder_blocks = [DecoderBlock(**block_arguments(c), cross_attention=True,
                                            name=f"decoder_block_{i}", dtype=self.dtype_policy)
                               for i in range(c.decoder_layers)]
        norm = lambda name: make_norm(c.norm_type, c.norm_epsilon, name, dtype=self.dtype_policy)
        self.encoder_norm = norm("encoder_final_norm") if c.norm_first else None
        self.decoder_norm = norm("decoder_final_norm") if c.norm_first else None
        self.lm_head = LanguageModelHead(token_embedding, c.tie_embeddings, kernel_initializer(c),
                                         name="lm_head", dtype=self.dtype_policy)

    def build(self, inputs_shape=None):
        self.encoder_embeddings.build((None, None))
        self.decoder_embeddings.build((None, None))
        hidden_shape = (None, None, self.config.hidden_size)
        for block in self.encoder_blocks:
            block.build(hidden_shape)
        for block in self.decoder_blocks:
            block.build(hidden_shape, hidden_shape)
        for norm in (self.encoder_norm, self.decoder_norm):
            if norm is not None:
                norm.build(hidden_shape)
        self.lm_head.build(hidden_shape)
        self.built = True

    def _check(self, inputs, keys):
        limit = self.config.max_length
        ids_keys = [key for key in keys if key.endswith("token_ids")]
        return check_inputs(inputs, type(self).__name__, keys,
                            max_lengths={key: limit for key in ids_keys},
                            vocab_sizes={key: self.config.vocab_size for key in ids_keys})

    def encode(self, inputs, training=None):
        """``encoder_token_ids``, ``encoder_padding_mask`` → ``(batch, src_seq, hidden)``."""
        inputs = self._check(inputs, ENCODER_KEYS)
        x = self.encoder_embeddings(inputs["encoder_token_ids"], training=training)
        for block in self.encoder_blocks:
            x = block(x, padding_mask=inputs["encoder_padding_mask"], training=training)
        return x if self.encoder_norm is None else self.encoder_norm(x)

    def decode(self, inputs, encoder_sequence, encoder_padding_mask, training=None):
        """Decoder inputs + encoder output → ``(batch, tgt_seq, vocab)`` float32 logits."""
        inputs = self._check(inputs, DECODER_KEYS)
        x = self.decoder_embeddings(inputs["decoder_token_ids"], training=training)
        for block in self.decoder_blocks:
            x = block(x, padding_mask=inputs["decoder_padding_mask"], encoder_sequence=encoder_sequence,
                      encoder_padding_mask=encoder_padding_mask, training=training)
        x = x if self.decoder_norm is None else self.decoder_norm(x)
        return self.lm_head(x)

    def call(self, inputs, training=None):
        inputs = self._check(inputs, ENCODER_KEYS + DECODER_KEYS)
        encoder_sequence = self.encode({key: inputs[key] for key in ENCODER_KEYS}, training=training)
        return self.decode({key: inputs[key] for key in DECODER_KEYS}, encoder_sequence,
                           inputs["encoder_padding_mask"], training=training)

    def token_weights(self, x, y):
        return padding_weights(x["decoder_padding_mask"])

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}
