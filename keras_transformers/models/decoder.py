"""The decoder-only backbone (GPT / Llama family) and the causal language model."""

import keras
import tensorflow as tf

from keras_transformers.generation.generate import generate, pad_prompts
from keras_transformers.layers import DecoderBlock
from keras_transformers.layers.quantization import Int8Dense
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

    bidirectional = False

    def __init__(self, config, cross_attention=False, token_embedding=None, **kwargs):
        self.cross_attention = bool(cross_attention)
        super().__init__(config, token_embedding=token_embedding, **kwargs)

    @property
    def num_blocks(self):
        return self.config.decoder_layers if self.cross_attention else self.config.num_layers

    def make_block(self, name):
        return DecoderBlock(**block_arguments(self.config), cross_attention=self.cross_attention,
                            name=name, dtype=self.dtype_policy)

    def validate_inputs(self, inputs):
        """The checked tensors of ``inputs`` by key (:func:`check_inputs`)."""
        return check_inputs(inputs, type(self).__name__, ("token_ids", "padding_mask"),
                            max_lengths={"token_ids": self.config.max_length},
                            vocab_sizes={"token_ids": self.config.vocab_size})

    def call(self, inputs, encoder_sequence=None, encoder_padding_mask=None, training=None):
        inputs = self.validate_inputs(inputs)
        x = self.embeddings(inputs["token_ids"], training=training)
        length = tf.shape(inputs["token_ids"])[1]
        bias = self.position_bias(tf.range(length), length)
        for block in self.blocks:
            x = self.call_block(block, x, padding_mask=inputs["padding_mask"],
                                differentiable={"encoder_sequence": encoder_sequence, "attention_bias": bias},
                                encoder_padding_mask=encoder_padding_mask, training=training)
        return self.finish(x)

    def init_cache(self, batch_size, cache_length):
        """An empty decoding cache: per block, zero ``(keys, values)`` of shape
        ``(batch_size, kv_heads, cache_length, head_dim)`` in the compute dtype."""
        c = self.config
        shape = [batch_size, c.key_value_heads, cache_length, c.head_dim]
        return [(tf.zeros(shape, self.compute_dtype), tf.zeros(shape, self.compute_dtype))
                for _ in self.blocks]

    def call_with_cache(self, token_ids, cache_index, cache, cross_attention_caches=None,
                        encoder_padding_mask=None):
        """Incremental decoding: run ``token_ids`` ``(batch, q)`` at cache slots (= positions)
        ``cache_index`` ``(batch, q)``, attending to everything cached before them.

        Args:
            cache: from :meth:`init_cache` or a previous call.
            cross_attention_caches: with cross-attention, per block the encoder output's
                ``(keys, values)`` (``block.cross_attention_layer.key_values(encoder_sequence)``).
            encoder_padding_mask: ``(batch, src_seq)``, with cross-attention.

        Returns:
            ``(hidden, cache)``: ``(batch, q, hidden)`` and the updated cache. Ids are not
            checked here (this runs once per token); callers check them once up front.
        """
        x = self.embeddings(token_ids, positions=cache_index)
        bias = self.position_bias(cache_index, tf.shape(cache[0][0])[2])  # queries at their slots
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, layer_cache = block(
                x, positions=cache_index, cache=cache[i], cache_index=cache_index, attention_bias=bias,
                cross_attention_cache=None if cross_attention_caches is None else cross_attention_caches[i],
                encoder_padding_mask=encoder_padding_mask)
            new_cache.append(layer_cache)
        return self.finish(x), new_cache

    def prefill(self, token_ids, lengths, cache_length, cross_attention_caches=None,
                encoder_padding_mask=None):
        """Run right-padded prompts ``(batch, prompt_len)`` (real lengths ``lengths``) into a
        fresh cache of ``cache_length`` slots. Returns ``(hidden, cache)`` with ``hidden`` the
        ``(batch, hidden)`` state after each row's last real token."""
        cache = self.init_cache(tf.shape(token_ids)[0], cache_length)
        slots = tf.broadcast_to(tf.range(tf.shape(token_ids)[1])[None, :], tf.shape(token_ids))
        hidden, cache = self.call_with_cache(token_ids, slots, cache, cross_attention_caches,
                                             encoder_padding_mask)
        return tf.gather(hidden, lengths - 1, batch_dims=1), cache

    def decode_step(self, token_ids, slots, cache, cross_attention_caches=None,
                    encoder_padding_mask=None):
        """One ``(batch,)`` token per row at its ``(batch,)`` slot → ``((batch, hidden), cache)``."""
        hidden, cache = self.call_with_cache(token_ids[:, None], slots[:, None], cache,
                                             cross_attention_caches, encoder_padding_mask)
        return hidden[:, 0], cache

    def get_config(self):
        return {**super().get_config(), "cross_attention": self.cross_attention}


def head_input_scale(config):
    """``hidden_size^-0.5`` for a tied head with ``rescale_tied_head`` (T5 v1.0), else 1."""
    return config.hidden_size ** -0.5 if config.tie_embeddings and config.rescale_tied_head else 1.0


class LanguageModelHead(keras.layers.Layer):
    """Hidden states → float32 vocabulary logits: tied (``h·Eᵀ``) or an untied linear layer.

    ``input_scale`` multiplies the hidden states first (T5 v1.0's tied head:
    ``hidden_size^-0.5``; :func:`head_input_scale`). ``model.quantize("int8")`` makes the head
    weight-only int8 either way: the tied table (:class:`TokenEmbedding`) or the untied
    :class:`~keras_transformers.layers.quantization.Int8Dense`."""

    def __init__(self, token_embedding, tie_embeddings, initializer, input_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.token_embedding = token_embedding
        self.tie_embeddings = tie_embeddings
        self.input_scale = float(input_scale)
        self.projection = None
        if not tie_embeddings:
            # A Dense whose int8 form is weight-only (model.quantize); same float weights.
            self.projection = Int8Dense(token_embedding.vocab_size, use_bias=False,
                                        kernel_initializer=initializer, name="lm_head",
                                        dtype=self.dtype_policy)

    def build(self, hidden_shape):
        if self.projection is not None:
            self.projection.build(hidden_shape)
        self.built = True

    def call(self, hidden):
        if self.input_scale != 1.0:
            hidden = hidden * tf.cast(self.input_scale, hidden.dtype)
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
        self.backbone = resolve_backbone(backbone, Decoder, self.dtype_policy)
        c = self.backbone.config
        self.lm_head = LanguageModelHead(self.backbone.embeddings.token_embedding, c.tie_embeddings,
                                         kernel_initializer(c), input_scale=head_input_scale(c),
                                         name="lm_head", dtype=self.dtype_policy)
        self.check_preprocessor()

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

    def generate(self, token_ids, max_new_tokens, *, padding_mask=None, temperature=0.0, top_k=None,
                 top_p=None, num_beams=1, length_penalty=1.0, stop_token_ids=None, seed=None,
                 jit_compile=None):
        """Continue each prompt by up to ``max_new_tokens`` tokens, with a key/value cache.

        The whole loop (prefill of the prompts, then one cached step per token) is one
        ``tf.function(jit_compile=True)``, traced once per static setting (``num_beams``,
        ``top_k``, greedy or not, top-p or not) and XLA-compiled once per bucket of batch size
        and of ``longest prompt + max_new_tokens`` (powers of two; the padding is cut from the
        output, which is identical to an unbucketed run); ``max_new_tokens``, temperature,
        ``top_p``, seed and stop tokens are inputs. See :mod:`keras_transformers.generation.generate`
        for the bounded cache of compiled loops.

        Args:
            token_ids: prompts: a list of id lists of any lengths, or ``(batch, prompt_len)``
                ids with ``padding_mask`` (1 = real token, right padding).
            max_new_tokens: tokens to add; prompt + new tokens must fit ``config.max_length``.
            temperature: 0 (default) for greedy decoding; ``> 0`` samples from
                ``softmax(logits / temperature)``.
            top_k: sample among the ``top_k`` most likely tokens only.
            top_p: sample from the nucleus of probability ``top_p`` only.
            num_beams: beam search with this many beams when ``> 1`` (temperature 0).
            length_penalty: beam search ranks finished beams by ``score / length**length_penalty``.
            stop_token_ids: an id or a list of ids that end a row (kept); the rest of the row
                is padding.
            seed: int; the same seed gives the same samples. Random when ``None``.
            jit_compile: compile the loop with XLA; ``None`` follows
                :func:`keras_transformers.ops.set_jit_compile` (default on). ``False`` traces
                the loop and the attention core without XLA (a TensorFlow graph loop).

        Returns:
            A dict of NumPy arrays, ``token_ids`` ``(batch, longest_prompt + max_new_tokens)``
            int32 (each row: its prompt, its new tokens, then ``config.pad_token_id``) and
            ``padding_mask`` (True on prompt and new tokens), ready to feed back to the model.
            Every id is in ``[0, vocab_size)``.

        Raises:
            ValueError: a bad argument (named, with its value and limit); a prompt plus
                ``max_new_tokens`` past ``config.max_length`` (use
                :func:`keras_transformers.generation.generate_uncached`, which slides a
                window, or a config with a larger ``max_length``); and
                :class:`~keras_transformers.generation.NonFiniteLogitsError` when the model's
                logits hold NaN/inf (NaN weights): no ids are returned then.
            TypeError: a setting of the wrong type (``top_k=2.5``, a string for ``token_ids``).

        Example:
            >>> lm = CausalLM(TransformerConfig.from_preset("tiny", norm_first=True))
            >>> out = lm.generate([[5, 6, 7], [8]], max_new_tokens=4, stop_token_ids=[2])
            >>> out["token_ids"].shape
            (2, 7)
        """
        prompt_ids, prompt_lengths = pad_prompts(token_ids, padding_mask)
        return generate(self, prompt_ids, prompt_lengths, max_new_tokens, max_length=self.config.max_length,
                        temperature=temperature, top_k=top_k, top_p=top_p, num_beams=num_beams,
                        length_penalty=length_penalty, stop_token_ids=stop_token_ids, seed=seed,
                        pad_token_id=self.config.pad_token_id, jit_compile=jit_compile)

    def generate_text(self, prompts, max_new_tokens, **settings):
        """Continue string prompts; needs an attached
        :class:`~keras_transformers.preprocessing.CausalLMPreprocessor`.

        Each prompt is tokenized after the start token; generation stops at the
        preprocessor's end token (unless ``stop_token_ids`` says otherwise). Other settings
        are those of :meth:`generate`.

        Args:
            prompts: a list of strings (``bytes`` are decoded as UTF-8), or one string.
            max_new_tokens: tokens to add. A prompt longer than ``config.max_length -
                max_new_tokens`` tokens keeps its last ones (the oldest, the start token
                first, are dropped), exactly as the exported ``serving_default`` does.

        Returns:
            The continuations (without the prompts): a list of ``str``, one per prompt
            (``[]`` for ``[]``), or one ``str`` for one string.

        Example:
            >>> lm.generate_text(["To be, or not"], max_new_tokens=40, temperature=0.8, seed=0)
        """
        import numpy as np

        from keras_transformers.generation.text import keep_last_tokens, text_batch

        if not hasattr(self.preprocessor, "prompt_ids"):
            raise ValueError("generate_text needs a CausalLMPreprocessor: build the model with "
                             "CausalLM(..., preprocessor=CausalLMPreprocessor(tokenizer, ...)).")
        texts, single = text_batch(prompts, "prompts")
        if not texts:
            return []
        prompt_ids = keep_last_tokens(self.preprocessor.prompt_ids(texts), max_new_tokens,
                                      self.config.max_length)
        stop_token_ids = settings.pop("stop_token_ids", None)
        if stop_token_ids is None or (isinstance(stop_token_ids, (list, tuple)) and not stop_token_ids):
            end_id = self.preprocessor.end_id
            stop_token_ids = [] if end_id is None else [end_id]
        outputs = self.generate(prompt_ids, max_new_tokens, stop_token_ids=stop_token_ids, **settings)
        stop = set(np.atleast_1d(stop_token_ids).tolist())
        continuations = []
        for row, mask, prompt in zip(outputs["token_ids"], outputs["padding_mask"], prompt_ids):
            new = row[mask][len(prompt):].tolist()
            continuations.append(new[:-1] if new and new[-1] in stop else new)
        texts = self.preprocessor.detokenize(continuations)
        return texts[0] if single else texts

    def generation_functions(self):
        """``(prefill, step)`` of :mod:`keras_transformers.generation.decoding`."""

        def prefill(prompt_ids, prompt_lengths, cache_length):
            hidden, cache = self.backbone.prefill(prompt_ids, prompt_lengths, cache_length)
            return self.lm_head(hidden), cache, ()

        def step(token_ids, slots, cache, context):
            hidden, cache = self.backbone.decode_step(token_ids, slots, cache)
            return self.lm_head(hidden), cache

        return prefill, step

    def get_config(self):
        return {**super().get_config(), "backbone": keras.saving.serialize_keras_object(self.backbone)}
