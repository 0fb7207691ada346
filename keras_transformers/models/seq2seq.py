"""The encoder-decoder model (the original Transformer, BART) with its language-model head."""

import keras

from keras_transformers.models.backbone import as_config, kernel_initializer
from keras_transformers.models.decoder import Decoder, LanguageModelHead
from keras_transformers.models.encoder import Encoder
from keras_transformers.models.inputs import check_inputs
from keras_transformers.models.task import TaskModel

ENCODER_KEYS = ("encoder_token_ids", "encoder_padding_mask")
DECODER_KEYS = ("decoder_token_ids", "decoder_padding_mask")


@keras.saving.register_keras_serializable(package="keras_transformers")
class Seq2Seq(TaskModel):
    """Encoder-decoder transformer (Vaswani et al., 2017) with a tied language-model head.

    An :class:`Encoder` reads the source bidirectionally; a :class:`Decoder` with
    cross-attention attends causally to the target prefix, then to the encoder output.
    Source and target share one token embedding (and the output projection, when
    ``tie_embeddings``): one vocabulary, as in Vaswani et al. and BART.

    Inputs: a dict with ``encoder_token_ids``, ``encoder_padding_mask`` ``(batch, src_seq)`` and
    ``decoder_token_ids``, ``decoder_padding_mask`` ``(batch, tgt_seq)`` (the target shifted
    right, starting with a start token).
    Output: ``(batch, tgt_seq, vocab)`` float32 logits. Labels for ``fit``: ``(batch, tgt_seq)``,
    the unshifted target; decoder padding weighs 0.

    Example:
        >>> model = Seq2Seq(TransformerConfig.from_preset("tiny"))
        >>> model.compile(optimizer="adam")
    """

    labels_padding_mask = "decoder_padding_mask"

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.config = as_config(config)
        c = self.config
        self.encoder = Encoder(c, name="encoder", dtype=self.dtype_policy)
        token_embedding = self.encoder.embeddings.token_embedding
        self.decoder = Decoder(c, cross_attention=True, token_embedding=token_embedding,
                               name="decoder", dtype=self.dtype_policy)
        self.lm_head = LanguageModelHead(token_embedding, c.tie_embeddings, kernel_initializer(c),
                                         name="lm_head", dtype=self.dtype_policy)

    def build(self, inputs_shape=None):
        for backbone in (self.encoder, self.decoder):
            if not backbone.built:
                backbone.build(None)
        self.lm_head.build((None, None, self.config.hidden_size))
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
        return self.encoder({"token_ids": inputs["encoder_token_ids"],
                             "padding_mask": inputs["encoder_padding_mask"]}, training=training)

    def decode(self, inputs, encoder_sequence, encoder_padding_mask, training=None):
        """Decoder inputs + encoder output → ``(batch, tgt_seq, vocab)`` float32 logits."""
        inputs = self._check(inputs, DECODER_KEYS)
        hidden = self.decoder({"token_ids": inputs["decoder_token_ids"],
                               "padding_mask": inputs["decoder_padding_mask"]},
                              encoder_sequence=encoder_sequence,
                              encoder_padding_mask=encoder_padding_mask, training=training)
        return self.lm_head(hidden)

    def call(self, inputs, training=None):
        inputs = self._check(inputs, ENCODER_KEYS + DECODER_KEYS)
        encoder_sequence = self.encode({key: inputs[key] for key in ENCODER_KEYS}, training=training)
        return self.decode({key: inputs[key] for key in DECODER_KEYS}, encoder_sequence,
                           inputs["encoder_padding_mask"], training=training)

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}
