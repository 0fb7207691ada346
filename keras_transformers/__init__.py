"""keras_transformers: encoder, decoder and encoder-decoder transformers for Keras 3 on TensorFlow.

``import keras_transformers`` registers every serializable class of the library with Keras
(layers, models, preprocessors, tokenizers, schedules), so that a ``.keras`` file it wrote loads
in a fresh process with ``keras.saving.load_model`` after this import alone. The subpackages
whose imports cost more (``export``, ``convert``, ``data``, ``metrics``, ``presets``, ...) are
attributes too, imported on first use (PEP 562)::

    import keras_transformers as kt
    kt.tokenizers.wordpiece_tokenizer("vocab.txt")
    kt.export.export_savedmodel(model, "serving/name")
"""

import importlib
import os

# TensorFlow's C++ INFO lines ("XLA service ... initialized", "oneDNN custom operations are on")
# are noise to users; warnings and errors still show. Set TF_CPP_MIN_LOG_LEVEL=0 to see them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from keras_transformers._backend import ensure_tensorflow_backend  # noqa: E402

ensure_tensorflow_backend()

# Every module that defines a registered (serializable) class is imported here: Keras finds a
# class by its registered name only once its module has run.
from keras_transformers import layers, models, ops, preprocessing, tokenizers  # noqa: E402
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
from keras_transformers.training import schedules as _schedules  # noqa: E402,F401

__version__ = "0.1.0"

# Imported on first attribute access: ``kt.export`` loads tf2onnx-free export code, ``kt.data``
# the readers, and so on, only when used.
_LAZY_SUBMODULES = ("convert", "data", "export", "generation", "jobs", "metrics", "presets",
                    "quickstart", "training")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))


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
    "convert",
    "data",
    "export",
    "generation",
    "jobs",
    "layers",
    "metrics",
    "models",
    "ops",
    "preprocessing",
    "presets",
    "quickstart",
    "tokenizers",
    "training",
]
