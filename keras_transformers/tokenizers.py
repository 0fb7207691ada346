"""In-graph tokenizers: the KerasHub tokenizer layers, set up the way each model family needs.

Every tokenizer returned here is a ``keras_hub.tokenizers`` layer: it runs inside ``tf.data``
and inside a SavedModel (the ops are TensorFlow's and tensorflow-text's), it has
``tokenize`` / ``detokenize`` and ``vocabulary_size()``, and it saves and loads with a
``.keras`` model. What this module adds is the configuration that makes each one agree with
the reference tokenizer of its family, training where KerasHub can do it, and argument checks.

    text ──tokenize──► token ids (int32; ragged, or dense with ``sequence_length``) ──detokenize──► text

Which ids each tokenizer reserves (what to pass as ``start_id`` / ``end_id`` / ``pad_id`` to a
preprocessor, and what ``vocab_size`` the model needs):

=========================  ===========================================  =========================
tokenizer                  reserved ids                                 model ``vocab_size``
=========================  ===========================================  =========================
:func:`byte_tokenizer`     none: ids are the bytes 0-255. By convention  256
                           pad 0 (NUL), start 2 (STX, "start of text"),
                           end 3 (ETX, "end of text"): control bytes
                           that real text does not contain
:func:`character_tokenizer` none: ids are Unicode code points; the same  ``vocabulary_size`` (clamp)
                           convention: pad 0, start 2, end 3
:class:`CharacterTokenizer` ``special_tokens`` first, in order; the      ``vocabulary_size()``
(:func:`train_characters`) default ``("<pad>", "<unk>", "<s>", "</s>")``
                           gives pad 0, unknown 1, start 2, end 3; then
                           the characters. With ``special_tokens=()``
                           none (the quickstart: 65 ids, 65 characters)
:func:`wordpiece_tokenizer` ``[PAD]`` 0, ``[UNK]`` 1, ``[CLS]`` 2,      ``vocabulary_size()``
(:func:`train_wordpiece`)  ``[SEP]`` 3, ``[MASK]`` 4 for a trained
                           vocabulary; a checkpoint's ``vocab.txt`` has
                           its own (``tokenizer.token_to_id("[CLS]")``)
:func:`train_sentencepiece` ``<pad>`` 0, ``<unk>`` 1, ``<s>`` 2, ``</s>`` 3  ``vocabulary_size()``
:func:`train_bytepair`     the ``special_tokens`` given, first, in order  ``vocabulary_size()``
                           (default ``<|endoftext|>`` 0)
=========================  ===========================================  =========================
"""

import os

import keras
import keras_hub
import tensorflow as tf

# The control bytes / code points that stand for padding, start and end of text with the byte and
# code-point tokenizers, which reserve no ids of their own (see the module docstring).
PAD_ID, START_OF_TEXT_ID, END_OF_TEXT_ID = 0, 2, 3
CHARACTER_SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>")

BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def byte_tokenizer(sequence_length=None):
    """UTF-8 bytes as ids 0-255, case kept (KerasHub lower-cases by default): every string
    round-trips exactly.

    It reserves no ids: every id is a byte. Use :data:`PAD_ID` (0, NUL) for padding and
    :data:`START_OF_TEXT_ID` (2, STX) / :data:`END_OF_TEXT_ID` (3, ETX) as start and end ids,
    control bytes that text does not contain; the model's ``vocab_size`` is 256.

    Example:
        >>> tokenizer = byte_tokenizer()
        >>> tokenizer.detokenize(tokenizer.tokenize("naïve 🙂"))   # b'na\\xc3\\xafve \\xf0\\x9f\\x99\\x82'
    """
    return keras_hub.tokenizers.ByteTokenizer(lowercase=False, sequence_length=sequence_length)


def character_tokenizer(sequence_length=None, vocabulary_size=None):
    """Unicode code points as ids (case kept, so every valid string round-trips).

    It reserves no ids: every id is a code point. As with :func:`byte_tokenizer`, use 0 (NUL)
    for padding and 2 (STX) / 3 (ETX) as start and end ids. For a small model over the
    characters a text actually uses, :func:`train_characters` and :class:`CharacterTokenizer`
    give dense ids instead.

    Args:
        sequence_length: pad or truncate to this length (dense output); ragged when ``None``.
        vocabulary_size: clamp ids above this to ``vocabulary_size - 1`` (for a model with a
            small embedding table); ``None`` keeps every code point.
    """
    return keras_hub.tokenizers.UnicodeCodepointTokenizer(
        sequence_length=sequence_length, lowercase=False, vocabulary_size=vocabulary_size)


def _read_vocabulary(vocabulary):
    if isinstance(vocabulary, (str, os.PathLike)):
        path = os.fspath(vocabulary)
        if not os.path.exists(path):
            raise FileNotFoundError(f"No vocabulary file at {path!r}.")
        with open(path, encoding="utf-8") as file:
            vocabulary = [line.rstrip("\n") for line in file]
    vocabulary = list(vocabulary)
    if not vocabulary:
        raise ValueError("`vocabulary` is empty.")
    return vocabulary


def wordpiece_tokenizer(vocabulary, lowercase=True, strip_accents=None, sequence_length=None,
                        special_tokens=BERT_SPECIAL_TOKENS):
    """WordPiece (BERT, DistilBERT, MiniLM), from a ``vocab.txt`` path or a list of tokens.

    Args:
        vocabulary: path to a one-token-per-line ``vocab.txt``, or the tokens in id order.
        lowercase: lower-case first (BERT *uncased*, MiniLM); ``False`` for cased models.
        strip_accents: remove accents; defaults to ``lowercase``, as BERT's uncased models do.
        sequence_length: pad or truncate to this length (dense output); ragged when ``None``.
        special_tokens: tokens that must be in the vocabulary (the ``[UNK]`` among them is
            the out-of-vocabulary token).

    With MiniLM's ``vocab.txt`` this gives the same ids as Hugging Face's tokenizer
    (``tests/tokenizers``).

    Example:
        >>> tokenizer = wordpiece_tokenizer("vocab.txt")
        >>> tokenizer.tokenize("Hello, world!")    # [7592, 1010, 2088, 999] with BERT's vocabulary
    """
    vocabulary = _read_vocabulary(vocabulary)
    missing = [token for token in special_tokens if token not in vocabulary]
    if missing:
        raise ValueError(f"The vocabulary lacks the special token(s) {missing}; a WordPiece "
                         f"vocabulary needs {list(special_tokens)}.")
    return keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=vocabulary, sequence_length=sequence_length, lowercase=lowercase,
        strip_accents=lowercase if strip_accents is None else strip_accents, oov_token="[UNK]")


def train_wordpiece(texts, vocabulary_size, lowercase=True, special_tokens=BERT_SPECIAL_TOKENS):
    """Learn a WordPiece vocabulary from ``texts`` (a ``tf.data.Dataset`` of strings).

    Returns the vocabulary (a list, special tokens first, so with the default ones ``[PAD]`` 0,
    ``[UNK]`` 1, ``[CLS]`` 2, ``[SEP]`` 3, ``[MASK]`` 4) for :func:`wordpiece_tokenizer`.

    Example:
        >>> vocabulary = train_wordpiece(["the cat sat", "the dog ran"], vocabulary_size=40)
        >>> tokenizer = wordpiece_tokenizer(vocabulary)
    """
    if int(vocabulary_size) <= len(special_tokens):
        raise ValueError(f"`vocabulary_size` must exceed the {len(special_tokens)} special tokens, "
                         f"got {vocabulary_size}.")
    return keras_hub.tokenizers.compute_word_piece_vocabulary(
        texts, int(vocabulary_size), lowercase=lowercase, strip_accents=lowercase,
        reserved_tokens=list(special_tokens))


def sentencepiece_tokenizer(proto, sequence_length=None):
    """SentencePiece (T5, Llama 2, ALBERT...) from a ``.model`` file path or its serialized bytes.

    Example:
        >>> tokenizer = sentencepiece_tokenizer(train_sentencepiece(texts, vocabulary_size=500))
    """
    if isinstance(proto, (str, os.PathLike)) and not os.path.exists(os.fspath(proto)):
        raise FileNotFoundError(f"No SentencePiece model at {os.fspath(proto)!r}.")
    return keras_hub.tokenizers.SentencePieceTokenizer(
        proto=os.fspath(proto) if isinstance(proto, os.PathLike) else proto,
        sequence_length=sequence_length)


def train_sentencepiece(texts, vocabulary_size, model_type="unigram", lowercase=False):
    """Train a SentencePiece model on ``texts`` (strings, or a ``tf.data.Dataset`` of them).

    Unlike SentencePiece's defaults, the text is not normalized (no NFKC, no whitespace
    folding) and characters outside the learned pieces fall back to bytes, so ``detokenize``
    gives back exactly the text that went in. Ids: ``<pad>`` 0, ``<unk>`` 1, ``<s>`` 2, ``</s>`` 3.

    Returns:
        The serialized model (bytes) for :func:`sentencepiece_tokenizer`; write it to a file
        to keep it.
    """
    import io

    import sentencepiece

    if model_type not in ("unigram", "bpe"):
        raise ValueError(f"`model_type` must be 'unigram' or 'bpe', got {model_type!r}.")
    minimum = 256 + 4  # the byte-fallback pieces and the four special tokens
    if int(vocabulary_size) <= minimum:
        raise ValueError(f"`vocabulary_size` must exceed {minimum} (256 byte pieces + 4 special "
                         f"tokens), got {vocabulary_size}.")
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(_strings(texts, lowercase)), model_writer=model,
        vocab_size=int(vocabulary_size), model_type=model_type, byte_fallback=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        character_coverage=1.0, pad_id=0, unk_id=1, bos_id=2, eos_id=3,
        hard_vocab_limit=False, minloglevel=2)
    return model.getvalue()


def bytepair_tokenizer(vocabulary, merges, sequence_length=None):
    """Byte-level BPE (GPT-2, RoBERTa, BART) from ``vocab.json`` + ``merges.txt`` (paths, or a
    token→id dict and a list of ``"a b"`` merge rules)."""
    for name, value in (("vocabulary", vocabulary), ("merges", merges)):
        if isinstance(value, (str, os.PathLike)) and not os.path.exists(os.fspath(value)):
            raise FileNotFoundError(f"No {name} file at {os.fspath(value)!r}.")
    as_argument = (lambda v: os.fspath(v) if isinstance(v, os.PathLike) else v)
    return keras_hub.tokenizers.BytePairTokenizer(
        vocabulary=as_argument(vocabulary), merges=as_argument(merges), sequence_length=sequence_length)


def train_bytepair(texts, vocabulary_size, special_tokens=("<|endoftext|>",)):
    """Train a byte-level BPE vocabulary (GPT-2's byte alphabet, so any text round-trips).

    Uses Hugging Face ``tokenizers`` (a KerasHub dependency) for the training.

    Returns:
        ``(vocabulary, merges)``: a token→id dict and the merge rules, for
        :func:`bytepair_tokenizer`. The ``special_tokens`` get the first ids, in order.
    """
    import tokenizers

    if int(vocabulary_size) <= 256 + len(special_tokens):
        raise ValueError(f"`vocabulary_size` must exceed {256 + len(special_tokens)} (the byte "
                         f"alphabet and the special tokens), got {vocabulary_size}.")
    trainer = tokenizers.ByteLevelBPETokenizer()
    trainer.train_from_iterator(_strings(texts), vocab_size=int(vocabulary_size),
                                special_tokens=list(special_tokens), show_progress=False)
    model = __import__("json").loads(trainer.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return dict(model["vocab"]), merges


def _strings(texts, lowercase=False):
    """Python strings from a list of strings/bytes or a ``tf.data.Dataset`` of ``tf.string``."""
    for text in (texts.as_numpy_iterator() if hasattr(texts, "as_numpy_iterator") else texts):
        text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
        yield text.lower() if lowercase else text


@keras.saving.register_keras_serializable(package="keras_transformers")
class CharacterTokenizer(keras.layers.Layer):
    """Characters as dense ids over a fixed character vocabulary, in the TensorFlow graph.

    Ids: ``special_tokens`` first, in order, then ``characters`` in the order given. With the
    default special tokens (:data:`CHARACTER_SPECIAL_TOKENS`): ``<pad>`` 0, ``<unk>`` 1 (any
    character outside the vocabulary), ``<s>`` 2, ``</s>`` 3. With ``special_tokens=()`` the ids
    are the characters alone (the quickstart: tiny Shakespeare's 65 sorted characters are ids
    0-64) and a character outside the vocabulary is an error.

    Only core TensorFlow ops (``UnicodeDecode``, ``LowerBound``, ``GatherV2``,
    ``ReduceJoin``), so it runs in ``tf.data``, in a SavedModel and under TF Serving. Calls
    return TensorFlow tensors, eagerly too (ragged ``(batch, None)`` for a batch of strings, or
    ``(batch, words, None)`` for ragged words; dense with ``sequence_length``).

    Args:
        characters: the characters (a string or a list of one-character strings), no repeats.
        special_tokens: tokens before the characters; ``"<unk>"`` among them receives unknown
            characters, ``"<pad>"`` is what dense output pads with (else id 0).
        sequence_length: pad or truncate to this length (dense output); ragged when ``None``.

    Example:
        >>> tokenizer = train_characters(["hello", "world"])     # <pad> <unk> <s> </s> d e h l o r w
        >>> tokenizer(tf.constant(["hello", "low"]))             # [[6, 5, 7, 7, 8], [7, 8, 10]]
        >>> tokenizer.detokenize(tf.ragged.constant([[6, 5, 7, 7, 8]]))   # [b'hello']
    """

    def __init__(self, characters, special_tokens=CHARACTER_SPECIAL_TOKENS, sequence_length=None, **kwargs):
        kwargs.pop("dtype", None)
        super().__init__(dtype="int32", **kwargs)
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        characters = list(characters)
        special_tokens = [str(token) for token in special_tokens]
        for character in characters:
            if not isinstance(character, str) or len(character) != 1:
                raise ValueError(f"`characters` must be single characters, got {character!r}.")
        repeated = sorted({c for c in characters if characters.count(c) > 1})
        if repeated:
            raise ValueError(f"`characters` repeats {repeated[:5]}; each character needs one id.")
        if not characters:
            raise ValueError("`characters` is empty.")
        if len(set(special_tokens)) != len(special_tokens):
            raise ValueError(f"`special_tokens` has repeats: {special_tokens}.")
        self.characters = characters
        self.special_tokens = special_tokens
        self.sequence_length = None if sequence_length is None else int(sequence_length)
        self.built = True
        offset = len(special_tokens)
        order = sorted(range(len(characters)), key=lambda i: ord(characters[i]))
        self._sorted_code_points = tf.constant([ord(characters[i]) for i in order], tf.int32)
        self._sorted_ids = tf.constant([offset + i for i in order], tf.int32)
        # Detokenizing: characters by id; special tokens detokenize to "".
        self._strings = tf.constant([""] * offset + characters)
        self.unknown_id = special_tokens.index("<unk>") if "<unk>" in special_tokens else None
        self.pad_id = special_tokens.index("<pad>") if "<pad>" in special_tokens else 0

    def vocabulary_size(self):
        return len(self.special_tokens) + len(self.characters)

    def get_vocabulary(self):
        return self.special_tokens + self.characters

    def token_to_id(self, token):
        vocabulary = self.get_vocabulary()
        if token not in vocabulary:
            raise ValueError(f"{token!r} is not in the vocabulary of this CharacterTokenizer.")
        return vocabulary.index(token)

    def id_to_token(self, id):
        if not 0 <= int(id) < self.vocabulary_size():
            raise ValueError(f"`id` must be in [0, {self.vocabulary_size()}), got {id}.")
        return self.get_vocabulary()[int(id)]

    @property
    def special_token_ids(self):
        return list(range(len(self.special_tokens)))

    def _lookup(self, code_points):
        position = tf.searchsorted(self._sorted_code_points, code_points, side="left")
        position = tf.minimum(position, len(self.characters) - 1)
        found = tf.equal(tf.gather(self._sorted_code_points, position), code_points)
        ids = tf.gather(self._sorted_ids, position)
        if self.unknown_id is not None:
            return tf.where(found, ids, self.unknown_id)
        check = tf.debugging.assert_equal(
            tf.reduce_all(found), True,
            message="CharacterTokenizer: a character outside its vocabulary (and no <unk> token)")
        with tf.control_dependencies([check]):
            return tf.identity(ids)

    def tokenize(self, inputs):
        inputs = tf.convert_to_tensor(inputs) if not isinstance(inputs, tf.RaggedTensor) else inputs
        scalar = isinstance(inputs, tf.Tensor) and inputs.shape.rank == 0
        if scalar:
            inputs = inputs[None]
        code_points = tf.strings.unicode_decode(inputs, "UTF-8")
        ids = code_points.with_flat_values(self._lookup(code_points.flat_values))
        if self.sequence_length is not None:
            shape = ids.shape.as_list()[:-1] + [self.sequence_length]
            ids = ids.to_tensor(self.pad_id, shape=shape)
        return ids[0] if scalar else ids

    def call(self, inputs):
        return self.tokenize(inputs)

    def detokenize(self, inputs):
        """Ids → strings: ``(batch, None)`` ids give ``(batch,)`` strings, one row of ids one
        string; special tokens (padding included) give nothing."""
        if not isinstance(inputs, (tf.Tensor, tf.RaggedTensor)):
            inputs = tf.ragged.constant(inputs, dtype=tf.int32) if isinstance(inputs, list) else inputs
            inputs = tf.convert_to_tensor(inputs) if not isinstance(inputs, tf.RaggedTensor) else inputs
        inputs = tf.cast(inputs, tf.int32)
        vector = isinstance(inputs, tf.Tensor) and inputs.shape.rank == 1
        if vector:
            inputs = inputs[None]
        in_range = tf.clip_by_value(inputs, 0, self.vocabulary_size() - 1)
        texts = tf.strings.reduce_join(tf.gather(self._strings, in_range), axis=-1)
        return texts[0] if vector else texts

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        return {**config, "characters": self.characters, "special_tokens": self.special_tokens,
                "sequence_length": self.sequence_length}


def train_characters(texts, special_tokens=CHARACTER_SPECIAL_TOKENS, sequence_length=None):
    """A :class:`CharacterTokenizer` over the distinct characters of ``texts`` (strings, bytes,
    or a ``tf.data.Dataset`` of them), sorted by code point, after ``special_tokens``.

    Example:
        >>> tokenizer = train_characters(["abc", "cab!"])
        >>> tokenizer.get_vocabulary()   # ['<pad>', '<unk>', '<s>', '</s>', '!', 'a', 'b', 'c']
    """
    characters = set()
    for text in _strings(texts):
        characters.update(text)
    if not characters:
        raise ValueError("`texts` holds no characters to learn a vocabulary from.")
    return CharacterTokenizer(sorted(characters), special_tokens=special_tokens,
                              sequence_length=sequence_length)
