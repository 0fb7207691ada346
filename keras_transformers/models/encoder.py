"""The encoder backbone (BERT family) and its task models."""

import keras
import numpy as np
import tensorflow as tf

from keras_transformers.layers import EncoderBlock, make_norm
from keras_transformers.layers.quantization import Int8Dense
from keras_transformers.models.backbone import (
    Backbone,
    block_arguments,
    kernel_initializer,
    resolve_backbone,
)
from keras_transformers.models.inputs import check_inputs
from keras_transformers.models.task import TaskModel, number_of_examples
from keras_transformers.ops import gelu


@keras.saving.register_keras_serializable(package="keras_transformers")
class Encoder(Backbone):
    """Bidirectional transformer encoder: embeddings, then ``num_layers`` EncoderBlocks.

    Inputs: a dict with ``token_ids`` ``(batch, seq)`` int, ``padding_mask`` ``(batch, seq)``
    (1/True = real token), and ``segment_ids`` when ``type_vocab_size > 0`` (optional, zeros).

    Output: ``(batch, seq, hidden)``. Padded positions never influence real ones.

    Example:
        >>> config = TransformerConfig.from_preset("tiny")
        >>> encoder = Encoder(config)
        >>> encoder({"token_ids": tf.constant([[5, 6, 0]]), "padding_mask": tf.constant([[1, 1, 0]])}).shape
        TensorShape([1, 3, 32])
    """

    def make_block(self, name):
        return EncoderBlock(**block_arguments(self.config), name=name, dtype=self.dtype_policy)

    def validate_inputs(self, inputs):
        """The checked tensors of ``inputs`` by key (:func:`check_inputs`)."""
        c = self.config
        return check_inputs(inputs, type(self).__name__, ("token_ids", "padding_mask"),
                            ("segment_ids",) if c.type_vocab_size else (),
                            max_lengths={"token_ids": c.max_length},
                            vocab_sizes={"token_ids": c.vocab_size, "segment_ids": c.type_vocab_size})

    def call(self, inputs, training=None):
        c = self.config
        inputs = self.validate_inputs(inputs)
        x = self.embeddings(inputs["token_ids"], segment_ids=inputs["segment_ids"] if c.type_vocab_size
                            else None, training=training)
        length = tf.shape(inputs["token_ids"])[1]
        bias = self.position_bias(tf.range(length), length)
        for block in self.blocks:
            x = self.call_block(block, x, padding_mask=inputs["padding_mask"],
                                differentiable={"attention_bias": bias}, training=training)
        return self.finish(x)


class _EncoderTask(TaskModel):
    def __init__(self, backbone, num_classes, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        self.backbone = resolve_backbone(backbone, Encoder, self.dtype_policy)
        self.num_classes = int(num_classes)
        if self.num_classes < 1:
            raise ValueError(f"`num_classes` must be >= 1, got {num_classes}.")
        self.dropout = float(dropout)
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.classifier = Int8Dense(
            self.num_classes, kernel_initializer=kernel_initializer(self.backbone.config),
            name="classifier", dtype=self.dtype_policy)
        self.check_preprocessor()

    @property
    def config(self):
        return self.backbone.config

    @property
    def num_label_classes(self):
        return self.num_classes

    def build(self, inputs_shape=None):
        if not self.backbone.built:  # a deserialized backbone arrives built
            self.backbone.build(inputs_shape)
        self.classifier.build((None, self.backbone.config.hidden_size))
        self.built = True

    def get_config(self):
        return {**super().get_config(), "backbone": keras.saving.serialize_keras_object(self.backbone),
                "num_classes": self.num_classes, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="keras_transformers")
class EncoderClassifier(_EncoderTask):
    """Sequence classification: pool the encoder output, then a linear layer.

    ``logits = W·Dropout(pool(Encoder(x))) + b`` with ``pool`` the first token (``"cls"``, BERT),
    the mean over real tokens (``"mean"``, sentence-transformers) or their feature-wise maximum
    (``"max"``, Kim 2014's max-over-time; it does not dilute a strong word in a long text).

    Args:
        backbone: an :class:`Encoder`, or a config to build one from.
        num_classes: number of labels.
        pooling: ``"cls"``, ``"mean"`` or ``"max"``.
        dropout: dropout before the classifier.
        label_names: the names of the classes, for :meth:`predict_labels`.
        preprocessor: a :class:`~keras_transformers.preprocessing.TextPreprocessor`; the model
            then fits on, evaluates and predicts from raw strings.

    Inputs: as :class:`Encoder` (or strings, with a preprocessor). Output:
    ``(batch, num_classes)`` float32 logits. Labels for ``fit``: ``(batch,)`` class ids.

    Example:
        >>> model = EncoderClassifier(TransformerConfig.from_preset("tiny"), num_classes=3)
        >>> model.compile(optimizer="adam")   # cross-entropy on logits + accuracy
    """

    POOLINGS = ("cls", "mean", "max")

    def __init__(self, backbone, num_classes, pooling="cls", dropout=0.1, label_names=None, **kwargs):
        super().__init__(backbone, num_classes, dropout=dropout, **kwargs)
        if pooling not in self.POOLINGS:
            raise ValueError(f"`pooling` must be one of {self.POOLINGS}, got {pooling!r}.")
        self.pooling = pooling
        self.label_names = None if label_names is None else [str(name) for name in label_names]
        if self.label_names is not None and len(self.label_names) != self.num_classes:
            raise ValueError(f"`label_names` has {len(self.label_names)} names for "
                             f"num_classes={self.num_classes}.")

    def predict_labels(self, x, batch_size=None):
        """Class names and probabilities: ``{"labels": [name per example], "probabilities":
        (batch, num_classes)}``. ``x`` is raw strings with a preprocessor, else model inputs."""
        if self.label_names is None:
            raise ValueError("This classifier has no `label_names`; pass them when building it.")
        if isinstance(x, (str, bytes)):
            raise TypeError(f"`x` must be a list of texts, got a single {type(x).__name__}; "
                            f"pass [{x[:30]!r}].")
        if number_of_examples(x) == 0:
            return {"labels": [], "probabilities": np.zeros((0, self.num_classes), np.float32)}
        probabilities = tf.nn.softmax(self.predict(x, batch_size=batch_size, verbose=0)).numpy()
        return {"labels": [self.label_names[i] for i in probabilities.argmax(-1)],
                "probabilities": probabilities}

    def call(self, inputs, training=None):
        sequence = self.backbone(inputs, training=training)
        if self.pooling == "cls":
            pooled = sequence[:, 0]
        elif self.pooling == "max":  # padding positions never win; an all-padding row pools to 0
            real = tf.cast(inputs["padding_mask"], tf.bool)[..., None]
            pooled = tf.reduce_max(tf.where(real, sequence, tf.cast(sequence.dtype.min, sequence.dtype)), 1)
            pooled = tf.where(tf.reduce_any(real, axis=1), pooled, tf.zeros_like(pooled))
        else:
            weights = tf.cast(inputs["padding_mask"], sequence.dtype)[..., None]
            pooled = tf.reduce_sum(sequence * weights, 1) / tf.maximum(tf.reduce_sum(weights, 1), 1.0)
        logits = self.classifier(self.dropout_layer(pooled, training=training))
        return tf.cast(logits, tf.float32)

    def get_config(self):
        return {**super().get_config(), "pooling": self.pooling, "label_names": self.label_names}


@keras.saving.register_keras_serializable(package="keras_transformers")
class EncoderTokenClassifier(_EncoderTask):
    """Per-token classification (tagging, e.g. NER): a linear layer on every position.

    Inputs: as :class:`Encoder`. Output: ``(batch, seq, num_classes)`` float32 logits.
    Labels for ``fit``: ``(batch, seq)`` class ids; padding and negative labels (e.g. -100 on
    continuation subwords) weigh 0 in the loss and metrics.

    Example:
        >>> tagger = EncoderTokenClassifier(TransformerConfig.from_preset("tiny"), num_classes=9)
    """

    labels_padding_mask = "padding_mask"

    def call(self, inputs, training=None):
        sequence = self.backbone(inputs, training=training)
        return tf.cast(self.classifier(self.dropout_layer(sequence, training=training)), tf.float32)

    def _check_tagging_preprocessor(self, method):
        if not hasattr(self.preprocessor, "first_piece_positions"):
            raise ValueError(f"{method} needs a TaggingPreprocessor: build the tagger with "
                             "EncoderTokenClassifier(..., preprocessor=TaggingPreprocessor(...)).")

    def tag_words(self, words):
        """The tag of every word: ``(batch, None)`` ragged word strings → ``(batch, None)``
        ragged tag strings in a graph (``tf.function``; the serving signature runs it).

        Each word takes the tag predicted on its first subword; words cut off by the sequence
        length are ``O``. Needs an attached
        :class:`~keras_transformers.preprocessing.TaggingPreprocessor`.
        """
        self._check_tagging_preprocessor("tag_words")
        positions = self.preprocessor.first_piece_positions(words)  # (batch, words)
        predicted = tf.argmax(self(self.preprocessor(words), training=False), -1, output_type=tf.int32)
        length = tf.shape(predicted)[1]
        flat_positions = positions.flat_values
        indices = tf.stack([tf.cast(positions.value_rowids(), tf.int32),
                            tf.minimum(flat_positions, length - 1)], axis=-1)
        tags = tf.gather(tf.constant(self.preprocessor.label_names), tf.gather_nd(predicted, indices))
        return positions.with_flat_values(tf.where(flat_positions < length - 1, tags, "O"))

    def predict_entities(self, sentences):
        """Entity spans of tokenized sentences; needs an attached
        :class:`~keras_transformers.preprocessing.TaggingPreprocessor` (IOB2 ``label_names``).

        Words are tagged by :meth:`tag_words`; spans are read from the tags as conlleval reads
        them (seqeval).

        Args:
            sentences: a list of word lists, e.g. ``[["EU", "rejects", "German", "call"]]``.

        Returns:
            Per sentence, a list of ``{"type", "start", "end", "text"}`` (word indices,
            ``end`` inclusive; ``text`` the words joined by spaces).
        """
        from seqeval.metrics.sequence_labeling import get_entities

        self._check_tagging_preprocessor("predict_entities")
        if isinstance(sentences, (str, bytes)) or any(isinstance(s, (str, bytes)) for s in sentences):
            raise TypeError("`sentences` must be a list of word lists, e.g. [['EU', 'rejects', "
                            "'German', 'call']]; got a string where a word list was expected "
                            "(split it into words first).")
        sentences = [list(sentence) for sentence in sentences]
        if not sentences:
            return []
        words = tf.ragged.constant(sentences, dtype=tf.string)
        tags = tf.function(self.tag_words)(words).to_list()
        return [[{"type": kind, "start": start, "end": end, "text": " ".join(sentence[start:end + 1])}
                 for kind, start, end in get_entities([tag.decode() for tag in sentence_tags])]
                for sentence, sentence_tags in zip(sentences, tags)]


@keras.saving.register_keras_serializable(package="keras_transformers")
class MaskedLM(TaskModel):
    """Masked language modeling (BERT): predict the original token at masked positions.

    Head: ``logits = LayerNorm(GELU(h·W + b))·Eᵀ + bias`` with ``E`` the tied token embedding.

    Inputs: as :class:`Encoder` (``token_ids`` already masked). Output: ``(batch, seq, vocab)``
    float32 logits. Labels for ``fit``: ``(batch, seq)``, the original id at masked positions
    and a negative id (e.g. -100) elsewhere: only masked positions count in loss and metrics.

    Example:
        >>> mlm = MaskedLM(TransformerConfig.from_preset("tiny"))
    """

    labels_padding_mask = "padding_mask"

    def __init__(self, backbone, **kwargs):
        super().__init__(**kwargs)
        self.backbone = resolve_backbone(backbone, Encoder, self.dtype_policy)
        c = self.backbone.config
        self.transform = Int8Dense(c.hidden_size,  # then GELU (ops.gelu, which ONNX has)
                                   kernel_initializer=kernel_initializer(c),
                                   name="transform", dtype=self.dtype_policy)
        self.transform_norm = make_norm(c.norm_type, c.norm_epsilon, "transform_norm",
                                        dtype=self.dtype_policy)
        self.check_preprocessor()

    @property
    def config(self):
        return self.backbone.config

    def build(self, inputs_shape=None):
        if not self.backbone.built:  # a deserialized backbone arrives built
            self.backbone.build(inputs_shape)
        hidden_shape = (None, None, self.backbone.config.hidden_size)
        self.transform.build(hidden_shape)
        self.transform_norm.build(hidden_shape)
        self.output_bias = self.add_weight(name="output_bias", shape=(self.backbone.config.vocab_size,),
                                           initializer="zeros")
        self.built = True

    def call(self, inputs, training=None):
        hidden = self.transform_norm(gelu(self.transform(self.backbone(inputs, training=training))))
        logits = self.backbone.embeddings.token_embedding.project(hidden)
        return tf.cast(logits, tf.float32) + self.output_bias

    def get_config(self):
        return {**super().get_config(), "backbone": keras.saving.serialize_keras_object(self.backbone)}


def sentence_embedding(encoder, inputs, normalize=True, training=False):
    """Mean-pooled (and by default L2-normalised) sentence embeddings, sentence-transformers' recipe.

    ``e = Σ_t m_t·h_t / max(Σ_t m_t, 1e-9)``, then ``e / max(‖e‖₂, 1e-12)`` with ``h = encoder(inputs)``
    and ``m`` the padding mask. With all-MiniLM-L6-v2 imported by
    :func:`keras_transformers.convert.from_huggingface` this is that model's embedding.

    Args:
        encoder: an :class:`Encoder`.
        inputs: its inputs, ``token_ids`` and ``padding_mask`` ``(batch, seq)``.
        normalize: L2-normalise (cosine similarity is then a dot product).

    Returns:
        ``(batch, hidden)`` float32.

    Example:
        >>> encoder, tokenizer = from_huggingface(".../all-MiniLM-L6-v2")
        >>> embeddings = sentence_embedding(encoder, inputs)   # (batch, 384)
        >>> similarity = embeddings @ tf.transpose(embeddings)
    """
    hidden = tf.cast(encoder(inputs, training=training), tf.float32)
    mask = tf.cast(inputs["padding_mask"], tf.float32)[..., None]
    pooled = tf.reduce_sum(hidden * mask, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1e-9)
    return tf.math.l2_normalize(pooled, axis=-1, epsilon=1e-24) if normalize else pooled
