"""Subclassed Keras layers: embeddings (and T5's relative position bias), attention, feed-forward (dense or mixture of experts), norms, and the two blocks."""

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
from keras_transformers.layers.relative_position import RelativePositionBias, relative_position_bucket

__all__ = [
    "DecoderBlock",
    "EncoderBlock",
    "FeedForward",
    "MixtureOfExperts",
    "MultiHeadAttention",
    "PositionEmbedding",
    "RMSNorm",
    "RelativePositionBias",
    "RotaryEmbedding",
    "SinusoidalPositionEncoding",
    "TokenEmbedding",
    "make_norm",
    "padding_attention_mask",
    "relative_position_bucket",
]
