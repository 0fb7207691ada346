"""Make sure Keras runs on the TensorFlow backend before anything else imports it."""

import os

_BACKEND = "tensorflow"


def ensure_tensorflow_backend():
    """Select the TensorFlow backend, or refuse clearly if another one was asked for.

    Keras reads ``KERAS_BACKEND`` once, at its first import. This zoo is built on
    TensorFlow ops (``tf.function(jit_compile=True)``, SavedModel, tf2onnx), so any
    other backend is an error rather than a silent mix.
    """
    requested = os.environ.get("KERAS_BACKEND")
    if requested is not None and requested != _BACKEND:
        raise ValueError(
            f"keras_transformers needs the TensorFlow backend, but KERAS_BACKEND={requested!r}. "
            f"Unset it or set KERAS_BACKEND={_BACKEND!r}."
        )
    os.environ.setdefault("KERAS_BACKEND", _BACKEND)
    import keras

    if keras.backend.backend() != _BACKEND:
        raise ValueError(
            f"keras_transformers needs the TensorFlow backend, but Keras was already imported "
            f"with backend {keras.backend.backend()!r} (from ~/.keras/keras.json or an earlier "
            f"KERAS_BACKEND). Set KERAS_BACKEND={_BACKEND!r} before importing keras."
        )
