"""Our own checkpoints as a directory: config + weights + tokenizer, to fine-tune elsewhere.

Layout written by :func:`save_preset`::

    <directory>/
      preset.json          format version, the model class, its Keras config (TransformerConfig
                           included), and the tokenizer's Keras config (or null)
      model.weights.h5     the weights (Keras' weights file; nothing is pickled)
      tokenizer/           the tokenizer's assets (e.g. vocabulary.txt), when there is one

:func:`load_preset` rebuilds the model from ``preset.json`` (Keras safe mode: registered
classes only), loads the weights, and returns ``(model, tokenizer)``.

Example:
    >>> save_preset(classifier, "my_sst2_model", tokenizer=tokenizer)
    >>> model, tokenizer = load_preset("my_sst2_model")      # same outputs
"""

import json
import os

import keras

FORMAT_VERSION = 1


def save_preset(model, directory, tokenizer=None):
    """Write ``model`` (a built model of ours) and optionally its tokenizer to ``directory``
    (created; existing preset files are overwritten)."""
    if not model.built:
        model.build()
    os.makedirs(directory, exist_ok=True)
    record = {"format_version": FORMAT_VERSION,
              "model": keras.saving.serialize_keras_object(model),
              "tokenizer": None if tokenizer is None else keras.saving.serialize_keras_object(tokenizer)}
    model.save_weights(os.path.join(directory, "model.weights.h5"), overwrite=True)
    if tokenizer is not None and hasattr(tokenizer, "save_assets"):
        os.makedirs(os.path.join(directory, "tokenizer"), exist_ok=True)
        tokenizer.save_assets(os.path.join(directory, "tokenizer"))
    with open(os.path.join(directory, "preset.json"), "w", encoding="utf-8") as file:
        json.dump(record, file, indent=2)


def load_preset(directory):
    """``(model, tokenizer)`` from a directory written by :func:`save_preset` (``tokenizer``
    is ``None`` when none was saved)."""
    path = os.path.join(os.fspath(directory), "preset.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"No preset.json in {os.fspath(directory)}; not a preset directory.")
    with open(path, encoding="utf-8") as file:
        record = json.load(file)
    if record.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"Preset format_version {record.get('format_version')!r} is not "
                         f"{FORMAT_VERSION}, the one this version reads.")
    model = keras.saving.deserialize_keras_object(record["model"], safe_mode=True)
    if not model.built:
        model.build()
    model.load_weights(os.path.join(directory, "model.weights.h5"))
    tokenizer = None
    if record["tokenizer"] is not None:
        tokenizer = keras.saving.deserialize_keras_object(record["tokenizer"], safe_mode=True)
        if hasattr(tokenizer, "load_assets") and os.path.isdir(os.path.join(directory, "tokenizer")):
            tokenizer.load_assets(os.path.join(directory, "tokenizer"))
    return model, tokenizer
