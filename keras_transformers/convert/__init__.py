"""Checkpoint import: Hugging Face checkpoint directories → our models and tokenizers."""

from keras_transformers.convert.huggingface import (
    SUPPORTED_ARCHITECTURES,
    CheckpointError,
    from_huggingface,
    read_tensors,
)

__all__ = ["SUPPORTED_ARCHITECTURES", "CheckpointError", "from_huggingface", "read_tensors"]
