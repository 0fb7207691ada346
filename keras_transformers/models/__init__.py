"""Backbones (Encoder, Decoder, Seq2Seq) and the task models that wrap them."""

from keras_transformers.models.config import PRESETS, TransformerConfig
from keras_transformers.models.decoder import CausalLM, Decoder
from keras_transformers.models.backbone import Backbone, EmbeddingStack
from keras_transformers.models.encoder import (
    Encoder,
    EncoderClassifier,
    EncoderTokenClassifier,
    MaskedLM,
    sentence_embedding,
)
from keras_transformers.models.seq2seq import Seq2Seq
from keras_transformers.models.task import TaskModel

__all__ = [
    "PRESETS",
    "Backbone",
    "CausalLM",
    "Decoder",
    "EmbeddingStack",
    "Encoder",
    "EncoderClassifier",
    "EncoderTokenClassifier",
    "MaskedLM",
    "Seq2Seq",
    "TaskModel",
    "TransformerConfig",
    "sentence_embedding",
]
