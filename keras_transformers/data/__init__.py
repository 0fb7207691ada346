"""Data: small bundled corpora, and readers of text files into ``tf.data.Dataset``s."""

from keras_transformers.data.conll import conll_tags, parse_conll, read_conll
from keras_transformers.data.corpora import tiny_shakespeare
from keras_transformers.data.readers import read_labeled, read_lines, read_pairs

__all__ = [
    "conll_tags",
    "parse_conll",
    "read_conll",
    "read_labeled",
    "read_lines",
    "read_pairs",
    "tiny_shakespeare",
]
