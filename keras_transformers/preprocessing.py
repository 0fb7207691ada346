"""From token ids to model inputs, in the TensorFlow graph: packing with special tokens,
truncation, padding, MLM masking, seq2seq pairs, and word labels aligned to subwords.

Every function takes ``tf.RaggedTensor`` token ids ``(batch, None)`` (what a tokenizer gives a
batch of strings) and returns dense tensors, so it runs inside ``tf.data`` and inside an
exported graph. Only core TensorFlow ops are used (no ``TFText>RoundRobinTrim``, which TF
Serving before 2.20 lacks).
"""

import keras
import tensorflow as tf

IGNORE_LABEL = -100  # a label the task models' loss and metrics skip (any negative label is)


def _ragged(ids, name):
    if isinstance(ids, tf.RaggedTensor):
        return ids
    if isinstance(ids, list):  # what KerasHub tokenizers return eagerly: nested Python lists
        return tf.ragged.constant(ids, dtype=tf.int32)
    ids = tf.convert_to_tensor(ids)
    if ids.shape.rank != 2:
        raise ValueError(f"`{name}` must be (batch, None) ragged token ids, got shape {ids.shape}.")
    return tf.RaggedTensor.from_tensor(ids)


def _keep_first(ids, lengths):
    """Each row of ``ids`` cut to its entry of ``lengths``."""
    starts = ids.row_starts()
    positions = tf.ragged.range(starts, starts + tf.cast(lengths, starts.dtype))
    return tf.RaggedTensor.from_row_lengths(tf.gather(ids.flat_values, positions.flat_values),
                                            positions.row_lengths())


def _to_lists(ids):
    """Ragged (or dense) ids as a list of lists of Python ints."""
    ids = ids.to_list() if isinstance(ids, tf.RaggedTensor) else ids
    return [[int(i) for i in row] for row in ids]


def truncation_lengths(first_lengths, second_lengths, budget):
    """How many tokens of each segment fit in ``budget``: round-robin trimming, as
    ``RoundRobinTrim`` does it (the longer segment loses tokens first; at a tie, the first
    segment keeps the extra one), computed with arithmetic instead of that op."""
    budget = tf.cast(budget, first_lengths.dtype)
    first = tf.minimum(first_lengths, tf.maximum((budget + 1) // 2, budget - second_lengths))
    second = tf.minimum(second_lengths, budget - first)
    return first, second


def pack(first, second=None, *, sequence_length, start_id, separator_id, end_id=None, pad_id=0):
    """``[start] first [separator] (second [end or separator])`` per row, truncated and padded.

    BERT: ``start=[CLS]``, ``separator=[SEP]`` (a pair is ``[CLS] a [SEP] b [SEP]``).
    GPT / BART style: ``start=<s>``, ``separator=</s>``.

    Args:
        first: ``(batch, None)`` ragged ids of the first segment.
        second: the second segment of sentence pairs, or ``None``.
        sequence_length: output length; segments are trimmed round-robin to fit.
        start_id, separator_id: the special ids; ``end_id`` closes a pair (default: separator).
        pad_id: what fills the rest.

    Returns:
        ``{"token_ids", "padding_mask", "segment_ids"}``, each ``(batch, sequence_length)`` int32;
        ``segment_ids`` is 0 up to the first separator, then 1.

    Example:
        >>> pack(tf.ragged.constant([[7, 8, 9]]), tf.ragged.constant([[5]]), sequence_length=7,
        ...      start_id=101, separator_id=102)["token_ids"]
        [[101, 7, 8, 9, 102, 5, 102]]
    """
    first = tf.cast(_ragged(first, "first"), tf.int32)
    batch = first.nrows()
    column = tf.ones([batch, 1], tf.int32)
    specials = 2 if second is None else 3
    budget = sequence_length - specials
    if budget < (1 if second is None else 2):
        raise ValueError(f"`sequence_length` {sequence_length} leaves no room for tokens after "
                         f"{specials} special tokens.")
    if second is None:
        first = _keep_first(first, tf.minimum(first.row_lengths(), budget))
        pieces = [column * start_id, first, column * separator_id]
        segments = [column * 0, tf.zeros_like(first), column * 0]
    else:
        second = tf.cast(_ragged(second, "second"), tf.int32)
        first_length, second_length = truncation_lengths(first.row_lengths(), second.row_lengths(), budget)
        first, second = _keep_first(first, first_length), _keep_first(second, second_length)
        end = separator_id if end_id is None else end_id
        pieces = [column * start_id, first, column * separator_id, second, column * end]
        segments = [column * 0, tf.zeros_like(first), column * 0, tf.ones_like(second), column]
    token_ids = tf.concat(pieces, axis=1)
    shape = [None, sequence_length]
    return {"token_ids": token_ids.to_tensor(pad_id, shape=shape),
            "padding_mask": tf.ones_like(token_ids).to_tensor(0, shape=shape),
            "segment_ids": tf.concat(segments, axis=1).to_tensor(0, shape=shape)}


def mask_tokens(token_ids, maskable, *, mask_id, vocab_size, rate=0.15, seed=None):
    """BERT's masked-language-model corruption (Devlin et al., 2019, section 3.1).

    Each maskable token is selected with probability ``rate``; a selected token becomes
    ``mask_id`` 80% of the time, a random id 10%, and stays itself 10%.

    Args:
        token_ids: ``(batch, seq)`` int ids.
        maskable: ``(batch, seq)`` bool, True for real, non-special tokens.
        mask_id, vocab_size: the ``[MASK]`` id; random ids are drawn from ``[0, vocab_size)``.
        rate: selection probability.
        seed: ``(2,)`` int seed of the stateless draws; ``None`` draws one.

    Returns:
        ``(masked_ids, labels)``: the corrupted ids, and the original ids at selected positions
        with :data:`IGNORE_LABEL` elsewhere (what :class:`MaskedLM` trains on).
    """
    if not 0.0 < rate < 1.0:
        raise ValueError(f"`rate` must be in (0, 1), got {rate}.")
    token_ids = tf.cast(token_ids, tf.int32)
    if seed is None:
        seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    shape = tf.shape(token_ids)
    selected = tf.logical_and(tf.cast(maskable, tf.bool), tf.random.stateless_uniform(shape, seeds[0]) < rate)
    action = tf.random.stateless_uniform(shape, seeds[1])
    random_ids = tf.random.stateless_uniform(shape, seeds[2], maxval=vocab_size, dtype=tf.int32)
    corrupted = tf.where(action < 0.8, mask_id, tf.where(action < 0.9, random_ids, token_ids))
    return (tf.where(selected, corrupted, token_ids),
            tf.where(selected, token_ids, IGNORE_LABEL))


def seq2seq_pair(source, target, *, source_length, target_length, start_id, end_id, pad_id=0):
    """Encoder inputs, teacher-forced decoder inputs and labels for one batch of pairs.

    ``decoder_token_ids = [start] target``, ``labels = target [end]`` (the decoder input
    shifted right), both cut to ``target_length``; the source gets ``end_id`` appended.

    Returns:
        ``(inputs, labels)``: inputs ``encoder_token_ids``, ``encoder_padding_mask``
        ``(batch, source_length)``, ``decoder_token_ids``, ``decoder_padding_mask``
        ``(batch, target_length)``; labels ``(batch, target_length)`` with ``pad_id`` on padding
        (weighed 0 through ``decoder_padding_mask``).
    """
    source = tf.cast(_ragged(source, "source"), tf.int32)
    target = tf.cast(_ragged(target, "target"), tf.int32)
    column = tf.ones([source.nrows(), 1], tf.int32)
    source = tf.concat([_keep_first(source, tf.minimum(source.row_lengths(), source_length - 1)),
                        column * end_id], axis=1)
    target = _keep_first(target, tf.minimum(target.row_lengths(), target_length - 1))
    decoder_inputs = tf.concat([column * start_id, target], axis=1)
    labels = tf.concat([target, column * end_id], axis=1)
    source_shape, target_shape = [None, source_length], [None, target_length]
    inputs = {"encoder_token_ids": source.to_tensor(pad_id, shape=source_shape),
              "encoder_padding_mask": tf.ones_like(source).to_tensor(0, shape=source_shape),
              "decoder_token_ids": decoder_inputs.to_tensor(pad_id, shape=target_shape),
              "decoder_padding_mask": tf.ones_like(decoder_inputs).to_tensor(0, shape=target_shape)}
    return inputs, labels.to_tensor(pad_id, shape=target_shape)


def align_word_labels(word_pieces, word_labels):
    """Word-level labels on subword tokens: each word's label on its first piece, and
    :data:`IGNORE_LABEL` on the others (and so on any piece the loss should skip).

    Args:
        word_pieces: ``(batch, words, pieces)`` ragged ids, e.g. a WordPiece tokenizer applied
            to ``(batch, words)`` ragged strings.
        word_labels: ``(batch, words)`` ragged int labels.

    Returns:
        ``(piece_ids, piece_labels)``, both ``(batch, pieces)`` ragged, ready for :func:`pack`
        (pack the labels with ``start_id=separator_id=IGNORE_LABEL, pad_id=IGNORE_LABEL``).
    """
    word_pieces = tf.cast(word_pieces, tf.int32)
    word_labels = tf.cast(word_labels, tf.int32)
    pieces_per_word = word_pieces.row_lengths(axis=2)  # (batch, words) ragged
    tf.debugging.assert_equal(pieces_per_word.row_lengths(), word_labels.row_lengths(),
                              message="`word_pieces` and `word_labels` must have the same words per row")
    # Each word's pieces: its label, then IGNORE_LABEL for the rest.
    first = tf.ragged.range(pieces_per_word.flat_values) == 0  # (words, pieces) ragged bool
    labels = tf.where(first.flat_values,
                      tf.repeat(word_labels.flat_values, pieces_per_word.flat_values), IGNORE_LABEL)
    piece_labels = word_pieces.with_flat_values(labels)
    return word_pieces.merge_dims(1, 2), piece_labels.merge_dims(1, 2)


def as_text_batch(texts, name="texts"):
    """A list (or array) of ``str`` / UTF-8 ``bytes`` as a ``(batch,)`` ``tf.string`` tensor;
    tensors, ragged tensors and datasets pass through.

    A bare ``str`` / ``bytes`` is refused (``TypeError``): iterating over it would make one
    text per character. ``bytes`` must be valid UTF-8 (``ValueError`` names the item).
    """
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"`{name}` must be a list of strings (a batch), got a single "
                        f"{type(texts).__name__} {texts[:40]!r}; pass [{name[:-1] or 'text'}].")
    if isinstance(texts, (tf.Tensor, tf.RaggedTensor)) or hasattr(texts, "element_spec"):
        return texts
    items = list(texts.tolist() if hasattr(texts, "tolist") else texts)
    for index, item in enumerate(items):
        if isinstance(item, bytes):
            try:
                item.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"`{name}[{index}]` is bytes that are not valid UTF-8 "
                                 f"({error.reason} at byte {error.start}).") from None
        elif not isinstance(item, str):
            raise TypeError(f"`{name}[{index}]` must be a str, got {type(item).__name__} {item!r}.")
    return tf.constant(items, dtype=tf.string, shape=[len(items)])


def _as_text_input(texts):
    """Python text inputs of a preprocessing layer as tensors: a list of strings as a
    ``(batch,)`` string tensor, a list of lists (words per sentence) as a ragged one."""
    if isinstance(texts, list) and texts and all(isinstance(item, (list, tuple)) for item in texts):
        return tf.ragged.constant([list(item) for item in texts], dtype=tf.string)
    if isinstance(texts, (list, str, bytes)) or (hasattr(texts, "dtype") and hasattr(texts, "tolist")
                                                 and getattr(texts.dtype, "kind", "") in "USO"):
        return as_text_batch(texts)
    return texts


class _TokenizingLayer(keras.layers.Layer):
    """A preprocessing layer that owns a tokenizer: it saves the tokenizer (its vocabulary
    included) in its config and rebuilds it on load.

    Called eagerly it takes Python lists of strings of any lengths (``TextPreprocessor(...)(
    ["short", "a longer text"])``); a ``tuple`` is a pair of such batches (sentence pairs,
    seq2seq pairs, words and tags).
    """

    def __init__(self, tokenizer, **kwargs):
        super().__init__(**kwargs)
        self.tokenizer = tokenizer

    def __call__(self, inputs, *args, **kwargs):
        if isinstance(inputs, tuple):
            inputs = tuple(_as_text_input(part) for part in inputs)
        else:
            inputs = _as_text_input(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def build(self, input_shape=None):
        # No weights: the tokenizer builds its own lookup tables when it is made.
        self.built = True

    def _in_graph(self, method, texts):
        """``method`` (a ``(batch,)`` string batch in) on ``texts``, run as one ``tf.function``
        per preprocessor and method, traced once for every batch size: a new function per call
        would retrace each time (and TensorFlow warns after five)."""
        functions = self.__dict__.setdefault("_graph_functions", {})  # untracked by Keras
        if method.__name__ not in functions:
            functions[method.__name__] = tf.function(method, input_signature=[tf.TensorSpec([None], tf.string)])
        return functions[method.__name__](tf.constant(list(texts), tf.string))

    def tokenize(self, texts):
        """``(batch, None)`` ragged int32 ids of ``texts`` (``(batch, words, None)`` for a
        ragged batch of words), in a graph and eagerly, where KerasHub's tokenizers give
        Python lists."""
        return tf.cast(_ragged(self.tokenizer(texts), "texts"), tf.int32)

    def token_lists(self, texts):
        """The token ids of each text, as Python lists (eager use: building generation prompts)."""
        return _to_lists(self.tokenize(as_text_batch(texts)))

    def detokenize(self, ids):
        """Text of each row of token ids (a list of lists)."""
        texts = self.tokenizer.detokenize(tf.ragged.constant(ids, dtype=tf.int32))
        texts = texts.numpy().tolist() if isinstance(texts, tf.Tensor) else texts
        texts = texts if isinstance(texts, list) else [texts]
        return [t.decode("utf-8") if isinstance(t, bytes) else t for t in texts]

    def get_config(self):
        return {**super().get_config(), "tokenizer": keras.saving.serialize_keras_object(self.tokenizer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_transformers")
class TextPreprocessor(_TokenizingLayer):
    """Strings in, model inputs out: a tokenizer, then :func:`pack`.

    Attach one to a task model (``EncoderClassifier(..., preprocessor=...)``) and the model
    fits on, evaluates and predicts from raw strings; it saves and loads with the model
    (the tokenizer's vocabulary included).

    Args:
        tokenizer: a tokenizer from :mod:`keras_transformers.tokenizers`.
        sequence_length: length of the packed inputs.
        start_id, separator_id, end_id, pad_id: the special ids of :func:`pack` (BERT:
            ``[CLS]``, ``[SEP]``; GPT / BART: ``<s>``, ``</s>``).
        segment_ids: also output ``segment_ids`` (for a config with ``type_vocab_size > 0``).

    Call: ``texts`` ``(batch,)`` strings, or a ``(first, second)`` pair of them for sentence
    pairs. Returns ``{"token_ids", "padding_mask"(, "segment_ids")}``, ``(batch, sequence_length)``.

    Example:
        >>> preprocessor = TextPreprocessor(wordpiece_tokenizer("vocab.txt"), 128, start_id=101,
        ...                                 separator_id=102)
        >>> preprocessor(tf.constant(["a sentence", "another one"]))["token_ids"].shape
        TensorShape([2, 128])
    """

    def __init__(self, tokenizer, sequence_length, start_id, separator_id, end_id=None, pad_id=0,
                 segment_ids=False, **kwargs):
        super().__init__(tokenizer, **kwargs)
        self.sequence_length = int(sequence_length)
        self.start_id, self.separator_id = int(start_id), int(separator_id)
        self.end_id = None if end_id is None else int(end_id)
        self.pad_id = int(pad_id)
        self.segment_ids = bool(segment_ids)

    def call(self, texts):
        first, second = texts if isinstance(texts, tuple) else (texts, None)
        packed = pack(self.tokenize(first), None if second is None else self.tokenize(second),
                      sequence_length=self.sequence_length, start_id=self.start_id,
                      separator_id=self.separator_id, end_id=self.end_id, pad_id=self.pad_id)
        if not self.segment_ids:
            del packed["segment_ids"]
        return packed

    def get_config(self):
        return {**super().get_config(), "sequence_length": self.sequence_length,
                "start_id": self.start_id, "separator_id": self.separator_id,
                "end_id": self.end_id, "pad_id": self.pad_id, "segment_ids": self.segment_ids}


@keras.saving.register_keras_serializable(package="keras_transformers")
class CausalLMPreprocessor(_TokenizingLayer):
    """Strings in, next-token training pairs out: ``[start] tokens [end]``, cut to
    ``sequence_length + 1``, as inputs (all but the last) and labels (all but the first).

    Attached to a :class:`CausalLM`, it lets the model fit on raw strings and
    ``generate_text`` from string prompts.

    Args:
        tokenizer: a tokenizer from :mod:`keras_transformers.tokenizers`.
        sequence_length: length of the inputs and labels.
        start_id: prepended to every text (BOS); ``end_id``: appended (EOS), and where
            ``generate_text`` and the exported text signature stop; ``None`` for a text with
            no end-of-text token (nothing appended, generation runs its ``max_new_tokens``).
        pad_id: what fills the rest (weighed 0 through ``padding_mask``).

    Call: ``texts`` ``(batch,)`` strings → ``({"token_ids", "padding_mask"}, labels)``, each
    ``(batch, sequence_length)``.
    """

    makes_labels = True  # a task model hands it whole dataset elements, labels included

    def __init__(self, tokenizer, sequence_length, start_id, end_id, pad_id=0, **kwargs):
        super().__init__(tokenizer, **kwargs)
        self.sequence_length = int(sequence_length)
        self.start_id, self.pad_id = int(start_id), int(pad_id)
        self.end_id = None if end_id is None else int(end_id)

    def call(self, texts):
        ids = self.tokenize(texts)
        column = tf.ones([ids.nrows(), 1], tf.int32)
        ends = [] if self.end_id is None else [column * self.end_id]
        ids = tf.concat([column * self.start_id, ids, *ends], axis=1)
        ids = _keep_first(ids, tf.minimum(ids.row_lengths(), self.sequence_length + 1))
        shape = [None, self.sequence_length + 1]
        dense = ids.to_tensor(self.pad_id, shape=shape)
        mask = tf.ones_like(ids).to_tensor(0, shape=shape)
        return {"token_ids": dense[:, :-1], "padding_mask": mask[:, 1:]}, dense[:, 1:]

    def prompts(self, texts):
        """``[start] tokens`` of each text: ``(batch, None)`` ragged int32, in a graph
        (``tf.function``, ``tf.data``)."""
        ids = self.tokenize(texts)
        return tf.concat([tf.ones([ids.nrows(), 1], tf.int32) * self.start_id, ids], axis=1)

    def prompt_ids(self, prompts):
        """:meth:`prompts` as lists of ids (for ``CausalLM.generate``)."""
        return _to_lists(self._in_graph(self.prompts, prompts))

    def get_config(self):
        return {**super().get_config(), "sequence_length": self.sequence_length,
                "start_id": self.start_id, "end_id": self.end_id, "pad_id": self.pad_id}


@keras.saving.register_keras_serializable(package="keras_transformers")
class Seq2SeqPreprocessor(_TokenizingLayer):
    """``(sources, targets)`` strings in, :func:`seq2seq_pair` out: encoder inputs, the target
    shifted right behind ``start_id`` as decoder inputs, and ``target [end]`` as labels.

    Attached to a :class:`Seq2Seq`, it lets the model fit on string pairs (pass
    ``x=(sources, targets)``, or a dataset of ``(source, target)`` elements) and
    ``generate_text`` from source strings.

    Args:
        tokenizer: one tokenizer for both sides (the model shares one vocabulary).
        source_length, target_length: lengths of the encoder and decoder inputs.
        start_id: the decoder's first token; ``end_id``: closes sources and targets, and is
            where ``generate_text`` stops.
        pad_id: what fills the rest.
    """

    makes_labels = True

    def __init__(self, tokenizer, source_length, target_length, start_id, end_id, pad_id=0, **kwargs):
        super().__init__(tokenizer, **kwargs)
        self.source_length, self.target_length = int(source_length), int(target_length)
        self.start_id, self.end_id, self.pad_id = int(start_id), int(end_id), int(pad_id)

    def call(self, pairs):
        sources, targets = pairs
        return seq2seq_pair(self.tokenize(sources), self.tokenize(targets),
                            source_length=self.source_length, target_length=self.target_length,
                            start_id=self.start_id, end_id=self.end_id, pad_id=self.pad_id)

    def sources(self, texts):
        """``tokens [end]`` of each text, cut to ``source_length`` as in training: ``(batch,
        None)`` ragged int32, in a graph (``tf.function``, ``tf.data``)."""
        ids = self.tokenize(texts)
        ids = _keep_first(ids, tf.minimum(ids.row_lengths(), self.source_length - 1))
        return tf.concat([ids, tf.ones([ids.nrows(), 1], tf.int32) * self.end_id], axis=1)

    def source_ids(self, sources):
        """:meth:`sources` as lists of ids (for ``Seq2Seq.generate``)."""
        return _to_lists(self._in_graph(self.sources, sources))

    def get_config(self):
        return {**super().get_config(), "source_length": self.source_length,
                "target_length": self.target_length, "start_id": self.start_id,
                "end_id": self.end_id, "pad_id": self.pad_id}


@keras.saving.register_keras_serializable(package="keras_transformers")
class TaggingPreprocessor(_TokenizingLayer):
    """Words and word tags in, subword inputs and labels out (CoNLL-style tagging).

    Each word is tokenized; its tag goes on its first subword and :data:`IGNORE_LABEL` on the
    others (:func:`align_word_labels`), then both are packed with ``[CLS] ... [SEP]``.

    Args:
        tokenizer: a subword tokenizer (WordPiece for BERT-family encoders).
        sequence_length: length of the packed inputs (long sentences are cut).
        start_id, separator_id, pad_id: as :func:`pack`.
        label_names: the tags, e.g. ``conll_tags(path)``; their index is the class id.

    Call: ``words`` ``(batch, None)`` ragged strings → inputs; or ``(words, tags)`` (ragged
    strings, as ``read_conll(...).ragged_batch(n)`` gives them) → ``(inputs, labels)``.
    """

    makes_labels = True

    def __init__(self, tokenizer, sequence_length, start_id, separator_id, label_names, pad_id=0, **kwargs):
        super().__init__(tokenizer, **kwargs)
        self.sequence_length = int(sequence_length)
        self.start_id, self.separator_id, self.pad_id = int(start_id), int(separator_id), int(pad_id)
        self.label_names = [str(name) for name in label_names]

    def _pack(self, ids):
        return pack(ids, sequence_length=self.sequence_length, start_id=self.start_id,
                    separator_id=self.separator_id, pad_id=self.pad_id)

    def call(self, words):
        words, tags = words if isinstance(words, tuple) else (words, None)
        pieces = self.tokenize(words)  # (batch, words, pieces)
        if tags is None:
            inputs = self._pack(pieces.merge_dims(1, 2))
            del inputs["segment_ids"]
            return inputs
        is_name = tf.equal(tags.flat_values[:, None], tf.constant(self.label_names)[None, :])
        tf.debugging.assert_equal(tf.reduce_all(tf.reduce_any(is_name, axis=1)), True,
                                  message=f"a tag outside label_names {self.label_names}")
        tag_ids = tags.with_flat_values(tf.argmax(is_name, axis=1, output_type=tf.int32))
        piece_ids, piece_labels = align_word_labels(pieces, tag_ids)
        inputs = self._pack(piece_ids)
        del inputs["segment_ids"]
        labels = pack(piece_labels, sequence_length=self.sequence_length, start_id=IGNORE_LABEL,
                      separator_id=IGNORE_LABEL, pad_id=IGNORE_LABEL)["token_ids"]
        return inputs, labels

    def first_piece_positions(self, words):
        """``(batch, words)`` ragged positions of each word's first subword in the packed
        inputs (after the start token); positions past the sequence were cut off."""
        pieces_per_word = tf.cast(self.tokenize(words).row_lengths(axis=2), tf.int32)
        counts = pieces_per_word.flat_values
        before = tf.cumsum(counts, exclusive=True)  # over the whole batch; then per row:
        row_offsets = tf.repeat(tf.gather(tf.concat([before, [0]], 0), pieces_per_word.row_starts()),
                                pieces_per_word.row_lengths())
        return pieces_per_word.with_flat_values(before - row_offsets + 1)

    def get_config(self):
        return {**super().get_config(), "sequence_length": self.sequence_length,
                "start_id": self.start_id, "separator_id": self.separator_id,
                "label_names": self.label_names, "pad_id": self.pad_id}
