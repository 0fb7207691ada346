"""The encoder-decoder model (the original Transformer, BART) with its language-model head."""

import keras
import numpy as np

from keras_transformers.generation.generate import check_ids, generate, pad_prompts, pad_to_bucket
from keras_transformers.models.backbone import as_config, kernel_initializer
from keras_transformers.models.decoder import Decoder, LanguageModelHead, head_input_scale
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
                                         input_scale=head_input_scale(c),
                                         name="lm_head", dtype=self.dtype_policy)
        self.check_preprocessor()

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

    def validate_inputs(self, inputs):
        """The checked tensors of ``inputs`` by key (:func:`check_inputs`)."""
        return self._check(inputs, ENCODER_KEYS + DECODER_KEYS)

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
        inputs = self.validate_inputs(inputs)
        encoder_sequence = self.encode({key: inputs[key] for key in ENCODER_KEYS}, training=training)
        return self.decode({key: inputs[key] for key in DECODER_KEYS}, encoder_sequence,
                           inputs["encoder_padding_mask"], training=training)

    def generate(self, encoder_token_ids, max_new_tokens, *, start_token_id=None,
                 decoder_token_ids=None, encoder_padding_mask=None, temperature=0.0, top_k=None,
                 top_p=None, num_beams=1, length_penalty=1.0, stop_token_ids=None, seed=None,
                 jit_compile=None):
        """Translate / summarize: decode up to ``max_new_tokens`` target tokens per source.

        The source is encoded once and each decoder block's cross-attention keys/values are
        computed once; the decoder then runs with a self-attention key/value cache, all in one
        compiled loop (see :meth:`CausalLM.generate` for what retraces).

        Args:
            encoder_token_ids: sources: a list of id lists, or ``(batch, src_len)`` ids with
                ``encoder_padding_mask`` (right padding).
            max_new_tokens: target tokens to add after the decoder prompt.
            start_token_id: the decoder's first token (e.g. BOS); or give
            decoder_token_ids: decoder prompts (a list of id lists), e.g. a forced prefix.
            Others: as :meth:`CausalLM.generate`.

        Returns:
            A dict of NumPy arrays: ``decoder_token_ids`` ``(batch, longest_decoder_prompt +
            max_new_tokens)`` int32 (the decoder prompt, new tokens, then padding) and
            ``decoder_padding_mask``.

        Example:
            >>> model = Seq2Seq(TransformerConfig.from_preset("tiny"))
            >>> out = model.generate([[5, 6, 7, 8], [9, 10]], max_new_tokens=5, start_token_id=1,
            ...                      stop_token_ids=[2], num_beams=4)
            >>> out["decoder_token_ids"].shape
            (2, 6)
        """
        c = self.config
        source_ids, source_lengths = pad_prompts(encoder_token_ids, encoder_padding_mask,
                                                 name="encoder_token_ids")
        check_ids(source_ids, source_lengths, c.vocab_size, "encoder_token_ids")
        if source_lengths.max() > c.max_length:
            raise ValueError(f"The longest source in `encoder_token_ids` has {source_lengths.max()} tokens, "
                             f"more than the model's max_length={c.max_length}: shorten it, or build "
                             "the model from a config with a larger `max_length`.")
        if (start_token_id is None) == (decoder_token_ids is None):
            raise ValueError("Pass exactly one of `start_token_id` (every target starts with it) "
                             "and `decoder_token_ids` (decoder prompts).")
        if decoder_token_ids is None:
            if isinstance(start_token_id, bool) or not isinstance(start_token_id, (int, np.integer)):
                raise TypeError(f"`start_token_id` must be an integer id, got "
                                f"{type(start_token_id).__name__} {start_token_id!r}.")
            decoder_token_ids = [[int(start_token_id)]] * len(source_lengths)
        prompt_ids, prompt_lengths = pad_prompts(decoder_token_ids, name="decoder_token_ids")
        if len(prompt_lengths) != len(source_lengths):
            raise ValueError(f"`decoder_token_ids` has {len(prompt_lengths)} rows for "
                             f"{len(source_lengths)} sources.")
        source_ids = pad_to_bucket(source_ids, source_lengths, c.max_length, c.pad_token_id)
        source_mask = np.arange(source_ids.shape[1])[None, :] < source_lengths[:, None]
        outputs = generate(self, prompt_ids, prompt_lengths, max_new_tokens, max_length=c.max_length,
                           temperature=temperature, top_k=top_k, top_p=top_p, num_beams=num_beams,
                           length_penalty=length_penalty, stop_token_ids=stop_token_ids, seed=seed,
                           pad_token_id=c.pad_token_id, jit_compile=jit_compile,
                           prompt_name="decoder_token_ids", extra_inputs=(source_ids, source_mask),
                           sliding_window=False)
        return {"decoder_token_ids": outputs["token_ids"],
                "decoder_padding_mask": outputs["padding_mask"]}

    def generate_text(self, sources, max_new_tokens, **settings):
        """Translate source strings; needs an attached
        :class:`~keras_transformers.preprocessing.Seq2SeqPreprocessor`.

        Sources are tokenized as in training (cut to the preprocessor's ``source_length``, as
        the exported ``serving_default`` cuts them); decoding starts at the preprocessor's
        start token and stops at its end token (unless ``stop_token_ids`` says otherwise).
        Other settings are those of :meth:`generate` (``num_beams``, ``temperature``, ...).

        Args:
            sources: a list of strings (``bytes`` are decoded as UTF-8), or one string.

        Returns:
            A list of ``str``, one per source (``[]`` for ``[]``), or one ``str`` for one string.

        Example:
            >>> model.generate_text(["Ein Hund rennt."], max_new_tokens=30, num_beams=4)
        """
        from keras_transformers.generation.text import text_batch

        if not hasattr(self.preprocessor, "source_ids"):
            raise ValueError("generate_text needs a Seq2SeqPreprocessor: build the model with "
                             "Seq2Seq(..., preprocessor=Seq2SeqPreprocessor(tokenizer, ...)).")
        texts, single = text_batch(sources, "sources")
        if not texts:
            return []
        stop_token_ids = settings.pop("stop_token_ids", None)
        if stop_token_ids is None or (isinstance(stop_token_ids, (list, tuple)) and not stop_token_ids):
            stop_token_ids = [self.preprocessor.end_id]
        outputs = self.generate(self.preprocessor.source_ids(texts), max_new_tokens,
                                start_token_id=self.preprocessor.start_id,
                                stop_token_ids=stop_token_ids, **settings)
        stop = set(np.atleast_1d(stop_token_ids).tolist())
        targets = []
        for row, mask in zip(outputs["decoder_token_ids"], outputs["decoder_padding_mask"]):
            new = row[mask][1:].tolist()  # after the start token
            targets.append(new[:-1] if new and new[-1] in stop else new)
        texts = self.preprocessor.detokenize(targets)
        return texts[0] if single else texts

    def generation_functions(self):
        """``(prefill, step)`` of :mod:`keras_transformers.generation.decoding`; the prefill
        also takes the padded source ids and mask, and returns the encoder's cross-attention
        keys/values (and mask) as the context every step reads."""

        def prefill(prompt_ids, prompt_lengths, cache_length, source_ids, source_mask):
            encoder_sequence = self.encoder({"token_ids": source_ids, "padding_mask": source_mask})
            cross_caches = [block.cross_attention_layer.key_values(encoder_sequence)
                            for block in self.decoder.blocks]
            hidden, cache = self.decoder.prefill(prompt_ids, prompt_lengths, cache_length,
                                                 cross_caches, source_mask)
            return self.lm_head(hidden), cache, (cross_caches, source_mask)

        def step(token_ids, slots, cache, context):
            hidden, cache = self.decoder.decode_step(token_ids, slots, cache, *context)
            return self.lm_head(hidden), cache

        return prefill, step

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}
