"""A run's tokenizer directory: train a tokenizer into it, load it back (:class:`TokenizerSetup`);
the run's JSON files."""

import dataclasses
import json
import os

from keras_transformers import tokenizers as tokenizer_lib
from keras_transformers.jobs.common import DEFAULT_VOCABULARY_SIZE, TOKENIZERS, JobError


@dataclasses.dataclass
class TokenizerSetup:
    """A tokenizer and the ids a preprocessor needs from it."""

    tokenizer: object
    kind: str
    pad_id: int
    start_id: int
    end_id: int
    vocabulary_size: int


def _write_json(path, value):
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(value, file, indent=2, ensure_ascii=False, default=str)
        file.write("\n")
    os.replace(temporary, path)


def _read_json(path):
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def train_tokenizer(kind, texts, vocabulary_size, directory):
    """Train a ``kind`` tokenizer on ``texts`` (a dataset of strings) and write its files into
    ``directory``; :func:`load_tokenizer` reads them back."""
    if kind not in TOKENIZERS:
        raise JobError(f"--tokenizer must be one of {', '.join(TOKENIZERS)}, got {kind!r}")
    os.makedirs(directory, exist_ok=True)
    size = vocabulary_size or DEFAULT_VOCABULARY_SIZE
    if kind == "char":
        tokenizer = tokenizer_lib.train_characters(texts)
        _write_json(os.path.join(directory, "characters.json"), tokenizer.characters)
    elif kind == "wordpiece":
        vocabulary = tokenizer_lib.train_wordpiece(texts, size)
        with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as file:
            file.write("".join(token + "\n" for token in vocabulary))
    elif kind == "sentencepiece":
        if size <= 260:
            raise JobError(f"--vocabulary-size must exceed 260 for sentencepiece (256 byte pieces + 4 "
                           f"special tokens), got {size}")
        with open(os.path.join(directory, "tokenizer.model"), "wb") as file:
            file.write(tokenizer_lib.train_sentencepiece(texts, size))
    elif kind == "bpe":
        if size <= 259:
            raise JobError(f"--vocabulary-size must exceed 259 for bpe (256 bytes + 3 special tokens), got {size}")
        vocabulary, merges = tokenizer_lib.train_bytepair(texts, size, special_tokens=("<pad>", "<s>", "</s>"))
        _write_json(os.path.join(directory, "vocab.json"), vocabulary)
        with open(os.path.join(directory, "merges.txt"), "w", encoding="utf-8") as file:
            file.write("".join(merge + "\n" for merge in merges))
    _write_json(os.path.join(directory, "tokenizer.json"), {"kind": kind})
    return load_tokenizer(directory)


def load_tokenizer(directory):
    """The :class:`TokenizerSetup` of a run's tokenizer directory."""
    kind = _read_json(os.path.join(directory, "tokenizer.json"))["kind"]
    if kind == "char":
        tokenizer = tokenizer_lib.CharacterTokenizer(_read_json(os.path.join(directory, "characters.json")))
        return TokenizerSetup(tokenizer, kind, tokenizer.token_to_id("<pad>"), tokenizer.token_to_id("<s>"),
                              tokenizer.token_to_id("</s>"), tokenizer.vocabulary_size())
    if kind == "byte":
        return TokenizerSetup(tokenizer_lib.byte_tokenizer(), kind, tokenizer_lib.PAD_ID,
                              tokenizer_lib.START_OF_TEXT_ID, tokenizer_lib.END_OF_TEXT_ID, 256)
    if kind == "wordpiece":
        tokenizer = tokenizer_lib.wordpiece_tokenizer(os.path.join(directory, "vocab.txt"))
        ids = [tokenizer.token_to_id(token) for token in ("[PAD]", "[CLS]", "[SEP]")]
    elif kind == "sentencepiece":
        tokenizer = tokenizer_lib.sentencepiece_tokenizer(os.path.join(directory, "tokenizer.model"))
        ids = [0, 2, 3]
    else:
        tokenizer = tokenizer_lib.bytepair_tokenizer(os.path.join(directory, "vocab.json"),
                                                     os.path.join(directory, "merges.txt"))
        ids = [tokenizer.token_to_id(token) for token in ("<pad>", "<s>", "</s>")]
    return TokenizerSetup(tokenizer, kind, *[int(i) for i in ids], int(tokenizer.vocabulary_size()))
