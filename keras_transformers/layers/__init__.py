"""Subclassed Keras layers: embeddings, attention, feed-forward (dense or mixture of experts), norms, and the two blocks."""

from keras_transformers.layers.attention import MultiHeadAttention
from keras_transformers.layers.blocks import DecoderBlock, EncoderBlock, padding_attention_mask
from keras_transformers.layers.embeddings import (
    PositionEmbedding,
    RotaryEmbedding,
    SinusoidalPositionEncoding,
    TokenEmbedding,
)
from keras_transformers.layers.feedforward import FeedForward
from keras_transformers.layers.moe import MixtureOfExperts
from keras_transformers.layers.normalization import RMSNorm, make_norm

__all__ = [
    "DecoderBlock",
    "EncoderBlock",
    "FeedForward",
    "MixtureOfExperts",
    "MultiHeadAttention",
    "PositionEmbedding",
    "RMSNorm",
    "RotaryEmbedding",
    "SinusoidalPositionEncoding",
    "TokenEmbedding",
    "make_norm",
    "padding_attention_mask",
]
