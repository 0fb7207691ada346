"""In-graph tokenizers: the KerasHub tokenizer layers, set up the way each model family needs.

Every tokenizer returned here is a ``keras_hub.tokenizers`` layer: it runs inside ``tf.data``
and inside a SavedModel (the ops are TensorFlow's and tensorflow-text's), it has
``tokenize`` / ``detokenize`` and ``vocabulary_size()``, and it saves and loads with a
``.keras`` model. What this module adds is the configuration that makes each one agree with
the reference tokenizer of its family, training where KerasHub can do it, and argument checks.

    text ──tokenize──► token ids (int32; ragged, or dense with ``sequence_length``) ──detokenize──► text
"""

import os

import keras_hub

BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def byte_tokenizer(sequence_length=None):
    """UTF-8 bytes as ids 0-255, case kept (KerasHub lower-cases by default): every string
    round-trips exactly.

    Example:
        >>> tokenizer = byte_tokenizer()
        >>> tokenizer.detokenize(tokenizer.tokenize("naïve 🙂"))   # b'na\\xc3\\xafve \\xf0\\x9f\\x99\\x82'
    """
    return keras_hub.tokenizers.ByteTokenizer(lowercase=False, sequence_length=sequence_length)


def character_tokenizer(sequence_length=None, vocabulary_size=None):
    """Unicode code points as ids (case kept, so every valid string round-trips).

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
    """Learn a WordPiece vocabulary from ``texts`` (a ``tf.data.Dataset`` of strings or a list).

    Returns the vocabulary (a list, special tokens first) for :func:`wordpiece_tokenizer`.

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
