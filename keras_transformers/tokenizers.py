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
        :func:`bytepair_tokenizer`.
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
