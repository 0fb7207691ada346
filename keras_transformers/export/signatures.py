"""What an exported model answers: the serving signatures of each task model.

Every model gets ``predict_ids`` (token ids and padding masks in, float32 ``logits`` out);
a model with its preprocessor attached also gets a text-in ``serving_default``:

==========================  ===============  =================================================
model (preprocessor)        input            ``serving_default`` outputs
==========================  ===============  =================================================
EncoderClassifier           ``text`` (b,)    ``labels`` (b,) string, ``label_ids`` (b,) int32,
(TextPreprocessor)                           ``probabilities`` (b, classes) float32
EncoderTokenClassifier      ``text`` (b,),   ``words`` (b, w) string, ``tags`` (b, w) string
(TaggingPreprocessor)       words split on   (both padded with ""), ``num_words`` (b,) int32
                            whitespace
CausalLM                    ``text`` (b,)    ``generated_text`` (b,) string (without the stop
(CausalLMPreprocessor)      prompts          token), ``generated_ids`` (b, max_new_tokens)
                                             int32 (stop token kept, then the pad id),
Seq2Seq                     ``text`` (b,)    ``generated_lengths`` (b,) int32 (new tokens,
(Seq2SeqPreprocessor)       sources          stop token counted), ``nonfinite`` (b,) bool
                                             (True: the model's logits held NaN/inf and the
                                             row stopped before that token; its ids so far
                                             are kept, none outside the vocabulary)
==========================  ===============  =================================================

A CausalLM prompt longer than ``max_length - max_new_tokens`` tokens keeps its last tokens,
as ``CausalLM.generate_text`` does; Seq2Seq sources are cut to the preprocessor's
``source_length`` in both.

``predict_ids`` inputs (all ``(batch, seq)`` int32, 1 = real token in masks): ``token_ids``,
``padding_mask`` (+ ``segment_ids`` when ``type_vocab_size > 0``); for ``Seq2Seq``
``encoder_token_ids``, ``encoder_padding_mask``, ``decoder_token_ids``,
``decoder_padding_mask``. Output: ``logits``. Without a preprocessor, ``serving_default`` is
``predict_ids``. Batch and sequence axes are dynamic.

Generation settings are fixed at export (:func:`generation_settings`); sampling
(``temperature > 0``) draws a fresh seed per request unless a ``seed`` is fixed.
"""

import numpy as np
import tensorflow as tf

from keras_transformers.generation.decoding import _is_stop
from keras_transformers.generation.generate import check_settings, decode_function
from keras_transformers.models import CausalLM, EncoderClassifier, EncoderTokenClassifier, Seq2Seq
from keras_transformers.ops import get_jit_compile

TEXT_INPUT = "text"

_DEFAULT_GENERATION = {"max_new_tokens": 32, "temperature": 0.0, "top_k": None, "top_p": None,
                       "num_beams": 1, "length_penalty": 1.0, "stop_token_ids": None, "seed": None}


def _ids_spec(name):
    return tf.TensorSpec([None, None], tf.int32, name=name)


def model_config(model):
    """The :class:`TransformerConfig` of a task model."""
    return model.config if isinstance(model, (CausalLM, Seq2Seq)) else model.backbone.config


def ids_input_names(model):
    """The ``predict_ids`` input names of ``model``, in order."""
    if isinstance(model, Seq2Seq):
        return ["encoder_token_ids", "encoder_padding_mask", "decoder_token_ids", "decoder_padding_mask"]
    names = ["token_ids", "padding_mask"]
    if model_config(model).type_vocab_size:
        names.append("segment_ids")
    return names


def is_generative(model):
    return isinstance(model, (CausalLM, Seq2Seq))


def has_text_signature(model):
    """Whether ``model`` carries the preprocessor its text-in ``serving_default`` needs."""
    needs = {EncoderClassifier: "sequence_length", EncoderTokenClassifier: "first_piece_positions",
             CausalLM: "prompts", Seq2Seq: "sources"}
    for model_type, attribute in needs.items():
        if isinstance(model, model_type):
            return hasattr(model.preprocessor, attribute)
    return False


def generation_settings(model, **settings):
    """The decoding settings an export fixes, completed with defaults and checked.

    Keys: ``max_new_tokens`` (default 32), ``temperature`` (0: greedy), ``top_k``, ``top_p``,
    ``num_beams``, ``length_penalty``, ``stop_token_ids`` (default: the preprocessor's end
    token), ``seed`` (sampling only; ``None``: a fresh seed per request).
    """
    unknown = sorted(set(settings) - set(_DEFAULT_GENERATION))
    if unknown:
        raise ValueError(f"Unknown generation settings {unknown}; the settings are {sorted(_DEFAULT_GENERATION)}.")
    settings = {**_DEFAULT_GENERATION, **{k: v for k, v in settings.items() if v is not None}}
    if settings["stop_token_ids"] is None and getattr(model.preprocessor, "end_id", None) is not None:
        settings["stop_token_ids"] = [model.preprocessor.end_id]
    stop = check_settings(model.config.vocab_size, settings["max_new_tokens"], settings["temperature"],
                          settings["top_k"], settings["top_p"], settings["num_beams"],
                          settings["length_penalty"], settings["stop_token_ids"])
    settings["stop_token_ids"] = stop.tolist()
    limit = model.config.max_length
    if settings["max_new_tokens"] >= limit:
        raise ValueError(f"`max_new_tokens` ({settings['max_new_tokens']}) must leave room for a prompt "
                         f"in the model's max_length={limit}.")
    return settings


def serving_functions(model, generation=None):
    """The signatures of ``model``: ``{name: (function, {input name: TensorSpec})}``.

    Args:
        model: an ``EncoderClassifier``, ``EncoderTokenClassifier``, ``MaskedLM``,
            ``CausalLM`` or ``Seq2Seq``.
        generation: for ``CausalLM`` / ``Seq2Seq``, settings from :func:`generation_settings`.

    The functions take their inputs as keyword arguments and return dicts of tensors; trace
    them with ``tf.function(function).get_concrete_function(**specs)``.
    """
    names = ids_input_names(model)
    id_specs = {name: _ids_spec(name) for name in names}

    def predict_ids(**inputs):
        return {"logits": model(inputs, training=False)}

    functions = {"predict_ids": (predict_ids, id_specs)}
    if has_text_signature(model):
        text_spec = {TEXT_INPUT: tf.TensorSpec([None], tf.string, name=TEXT_INPUT)}
        if isinstance(model, EncoderClassifier):
            text_function = _classify(model)
        elif isinstance(model, EncoderTokenClassifier):
            text_function = _tag(model)
        else:
            text_function = _generate_text(model, generation or generation_settings(model))
        functions["serving_default"] = (text_function, text_spec)
    else:
        functions["serving_default"] = functions["predict_ids"]
    return functions


def _classify(model):
    label_names = model.label_names or [str(i) for i in range(model.num_classes)]

    def classify(text):
        probabilities = tf.nn.softmax(model(model.preprocessor(text), training=False))
        label_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {"labels": tf.gather(tf.constant(label_names), label_ids), "label_ids": label_ids,
                "probabilities": probabilities}

    return classify


def _tag(model):
    def tag(text):
        words = tf.strings.split(text)
        tags = model.tag_words(words)
        return {"words": words.to_tensor(""), "tags": tags.to_tensor(""),
                "num_words": tf.cast(words.row_lengths(), tf.int32)}

    return tag


def _generate_text(model, settings):
    c = model.config
    max_new_tokens = settings["max_new_tokens"]
    greedy = settings["temperature"] == 0
    stop = tf.constant(settings["stop_token_ids"], tf.int32)
    preprocessor = model.preprocessor

    def decode(prompts, extra_inputs):
        # The loop compiles with XLA or not as the attention core does (jit_compile_scope).
        static = (settings["num_beams"], greedy, settings["top_k"], settings["top_p"] is not None,
                  get_jit_compile(), c.pad_token_id)
        loop = decode_function(model, static)
        if settings["seed"] is not None or greedy:
            seed = tf.constant([0, int(settings["seed"] or 0) % 2**31], tf.int32)
        else:  # a fresh seed per request
            seed = tf.random.uniform([2], 0, 2**31 - 1, dtype=tf.int32)
        prompt_ids = prompts.to_tensor(c.pad_token_id)
        prompt_lengths = tf.cast(prompts.row_lengths(), tf.int32)
        # The token buffer (= cache) holds each prompt and its new tokens.
        width = tf.shape(prompt_ids)[1] + max_new_tokens
        tokens, new_lengths, nonfinite = loop(
            prompt_ids, prompt_lengths, width, tf.constant(max_new_tokens), extra_inputs, seed, stop,
            tf.constant(float(settings["temperature"] or 1.0)), tf.constant(float(settings["top_p"] or 1.0)),
            tf.constant(float(settings["length_penalty"])))
        steps = tf.range(max_new_tokens)[None, :]
        new = tf.gather(tokens, prompt_lengths[:, None] + steps, batch_dims=1)
        new = tf.where(steps < new_lengths[:, None], new, c.pad_token_id)
        last = tf.gather(new, tf.maximum(new_lengths - 1, 0), batch_dims=1)
        text_lengths = new_lengths - tf.cast(_is_stop(last, stop) & (new_lengths > 0), tf.int32)
        text = preprocessor.tokenizer.detokenize(tf.RaggedTensor.from_tensor(new, lengths=text_lengths))
        return {"generated_text": text, "generated_ids": new, "generated_lengths": new_lengths,
                "nonfinite": nonfinite}

    if isinstance(model, CausalLM):
        def generate_text(text):
            # Prompts that leave no room for max_new_tokens keep their last tokens, as
            # CausalLM.generate_text does (the start token is the first dropped).
            prompts = preprocessor.prompts(text)[:, -(c.max_length - max_new_tokens):]
            return decode(prompts, ())
    else:
        def generate_text(text):
            sources = preprocessor.sources(text)
            source_ids = sources.to_tensor(c.pad_token_id)
            source_mask = tf.sequence_mask(sources.row_lengths(), tf.shape(source_ids)[1])
            starts = tf.fill([sources.nrows(), 1], preprocessor.start_id)
            return decode(tf.RaggedTensor.from_tensor(starts), (source_ids, source_mask))

    return generate_text


def sample_texts():
    """Default texts for verification and warmup requests: seven, of different lengths."""
    return ["the film was great", "a sad plot",
            "An old man walks his dog along the beach at sunset.",
            "hello", "Zwei Hunde spielen im Schnee.",
            "It was the best of times, it was the worst of times, it was the age of wisdom.",
            "ok ok ok"]


def sample_ids(model, batch, length, seed=0):
    """Random ``predict_ids`` inputs: ids in the vocabulary, a right-padded mask (row ``i``
    keeps ``length - i % length`` tokens), as a dict of int32 NumPy arrays."""
    rng = np.random.default_rng(seed)
    c = model_config(model)
    lengths = length - np.arange(batch) % max(length // 2, 1)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int32)
    inputs = {}
    for name in ids_input_names(model):
        if name.endswith("padding_mask"):
            inputs[name] = mask
        elif name == "segment_ids":
            inputs[name] = (np.arange(length)[None, :] >= length // 2).astype(np.int32).repeat(batch, 0) * mask
        else:
            inputs[name] = np.where(mask, rng.integers(1, c.vocab_size, (batch, length)), 0).astype(np.int32)
    return inputs
