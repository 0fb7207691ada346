"""keras_transformers: encoder, decoder and encoder-decoder transformers for Keras 3 on TensorFlow."""

from keras_transformers._backend import ensure_tensorflow_backend

ensure_tensorflow_backend()

from keras_transformers import layers, models, ops  # noqa: E402
from keras_transformers.models import (  # noqa: E402
    PRESETS,
    CausalLM,
    Decoder,
    Encoder,
    EncoderClassifier,
    EncoderTokenClassifier,
    MaskedLM,
    Seq2Seq,
    TransformerConfig,
)

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "CausalLM",
    "Decoder",
    "Encoder",
    "EncoderClassifier",
    "EncoderTokenClassifier",
    "MaskedLM",
    "Seq2Seq",
    "TransformerConfig",
    "layers",
    "models",
    "ops",
]
