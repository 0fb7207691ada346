"""keras_transformers: encoder, decoder and encoder-decoder transformers for Keras 3 on TensorFlow."""

import os

# TensorFlow's C++ INFO lines ("XLA service ... initialized", "oneDNN custom operations are on")
# are noise to users; warnings and errors still show. Set TF_CPP_MIN_LOG_LEVEL=0 to see them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from keras_transformers._backend import ensure_tensorflow_backend  # noqa: E402

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
