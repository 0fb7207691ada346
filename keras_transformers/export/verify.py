"""Verification of an export against the Keras model it came from.

:func:`reference_outputs` computes what each request should return through the Keras model's
own API (``predict_labels``, ``tag_words``, ``generate``, a plain call); :func:`replay_in_fresh_process`
runs the same requests through the SavedModel in a new Python process that has only
TensorFlow; :func:`compare_outputs` raises :class:`ExportVerificationError` on any difference:
float outputs may differ by at most ``atol`` (1e-5: XLA and the plain TensorFlow kernels
round differently), everything else (labels, tags, generated ids and text) must be identical.
"""

import importlib.util
import os
import subprocess
import sys
import tempfile

import numpy as np
import tensorflow as tf

from keras_transformers.export.serving_ops import savedmodel_ops, tf_text_serving_ops
from keras_transformers.export.signatures import TEXT_INPUT, model_config
from keras_transformers.models import CausalLM, EncoderClassifier, EncoderTokenClassifier


class ExportVerificationError(RuntimeError):
    """An exported model does not reproduce the Keras model, or does not run at all."""


def tf_text_op_libraries():
    """Paths of tensorflow-text's op libraries (``.so``), found without importing it."""
    spec = importlib.util.find_spec("tensorflow_text")
    if spec is None:
        return []
    ops_dir = os.path.join(spec.submodule_search_locations[0], "python", "ops")
    return sorted(os.path.join(ops_dir, name) for name in os.listdir(ops_dir) if name.endswith(".so"))


def needs_tf_text(export_dir):
    """Whether the SavedModel's graph uses tensorflow-text ops (it tokenizes)."""
    text_ops = tf_text_serving_ops()
    return any(op in text_ops or op.startswith("TFText>") for op in savedmodel_ops(export_dir))


def _as_bytes(strings):
    return np.array([s.encode("utf-8") if isinstance(s, str) else bytes(s) for s in strings], dtype=object)


def _padded(rows, width, fill):
    out = np.full((len(rows), width), fill, dtype=object if isinstance(fill, bytes) else np.int32)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def reference_outputs(model, signature_name, inputs, generation=None):
    """What the Keras model answers to one request: ``{output name: NumPy array}``, or
    ``None`` for an output that cannot be predicted (sampling without a fixed seed)."""
    if signature_name == "predict_ids" or TEXT_INPUT not in inputs:
        return {"logits": np.asarray(model({k: tf.constant(v) for k, v in inputs.items()}, training=False))}
    texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in inputs[TEXT_INPUT]]
    if isinstance(model, EncoderClassifier):
        predicted = model.predict_labels(texts)
        return {"labels": _as_bytes(predicted["labels"]),
                "label_ids": predicted["probabilities"].argmax(-1).astype(np.int32),
                "probabilities": predicted["probabilities"]}
    if isinstance(model, EncoderTokenClassifier):
        words = [text.split() for text in texts]
        tags = tf.function(model.tag_words)(tf.ragged.constant(words, dtype=tf.string)).to_list()
        width = max(len(row) for row in words)
        return {"words": _padded([_as_bytes(row) for row in words], width, b""),
                "tags": _padded(tags, width, b""), "num_words": np.array([len(w) for w in words], np.int32)}
    return _reference_generation(model, texts, generation)


def _reference_generation(model, texts, settings):
    c, preprocessor = model_config(model), model.preprocessor
    max_new_tokens = settings["max_new_tokens"]
    decoding = {key: settings[key] for key in ("temperature", "top_k", "top_p", "num_beams", "length_penalty",
                                               "stop_token_ids", "seed")}
    if isinstance(model, CausalLM):
        prompts = [row[-(c.max_length - max_new_tokens):] for row in preprocessor.prompt_ids(texts)]
        out = model.generate(prompts, max_new_tokens, **decoding)
        rows, masks, skip = out["token_ids"], out["padding_mask"], [len(p) for p in prompts]
    else:
        out = model.generate(preprocessor.source_ids(texts), max_new_tokens,
                             start_token_id=preprocessor.start_id, **decoding)
        rows, masks, skip = out["decoder_token_ids"], out["decoder_padding_mask"], [1] * len(texts)
    new = [row[mask][start:].tolist() for row, mask, start in zip(rows, masks, skip)]
    stop = set(settings["stop_token_ids"])
    text = preprocessor.detokenize([ids[:-1] if ids and ids[-1] in stop else ids for ids in new])
    outputs = {"generated_text": _as_bytes(text), "generated_ids": _padded(new, max_new_tokens, c.pad_token_id),
               "generated_lengths": np.array([len(ids) for ids in new], np.int32),
               "nonfinite": np.zeros(len(new), bool)}  # generate raised if the model gave NaN/inf
    if settings["temperature"] > 0 and settings["seed"] is None:  # a fresh seed per request
        return {name: None for name in outputs}
    return outputs


def replay_in_fresh_process(export_dir, timeout=600):
    """Run the warmup requests of ``export_dir`` in a new Python process that imports only
    TensorFlow (see ``replay_warmup.py``); returns ``[{output name: array}]`` per request."""
    script = os.path.join(os.path.dirname(__file__), "replay_warmup.py")
    libraries = tf_text_op_libraries() if needs_tf_text(export_dir) else []
    with tempfile.TemporaryDirectory() as scratch:
        output_path = os.path.join(scratch, "outputs.npz")
        result = subprocess.run([sys.executable, script, str(export_dir), output_path, *libraries],
                                capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        if result.returncode != 0:
            raise ExportVerificationError(
                f"The SavedModel in {export_dir} failed in a fresh TensorFlow-only process:\n"
                f"{result.stderr[-4000:]}")
        with np.load(output_path, allow_pickle=True) as saved:
            flat = {key: saved[key] for key in saved.files}
    requests = {}
    for key, value in flat.items():
        index, name = key.split("/", 1)
        requests.setdefault(int(index), {})[name] = value
    return [requests[i] for i in sorted(requests)]


def compare_outputs(expected, actual, where, atol=1e-5):
    """Raise :class:`ExportVerificationError` unless ``actual`` reproduces ``expected``
    (dicts of arrays; an expected ``None`` checks presence only). Returns the largest
    absolute difference of the float outputs."""
    problems, largest = [], 0.0
    for name, want in expected.items():
        if name not in actual:
            problems.append(f"output {name!r} is missing (got {sorted(actual)})")
            continue
        got = np.asarray(actual[name])
        if want is None:
            continue
        want = np.asarray(want)
        if got.shape != want.shape:
            problems.append(f"output {name!r} has shape {got.shape}, expected {want.shape}")
        elif want.dtype.kind == "f":
            difference = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
            largest = max(largest, difference)
            if not difference <= atol:
                problems.append(f"output {name!r} differs by up to {difference:.3g} (limit {atol:g})")
        elif not np.array_equal(got.astype(want.dtype) if want.dtype != object else got, want):
            rows = np.flatnonzero(np.any((got != want).reshape(len(want), -1), axis=1)) if want.ndim else [0]
            problems.append(f"output {name!r} differs in row {int(rows[0])}: got {got[rows[0]]!r}, "
                            f"expected {want[rows[0]]!r}")
    if problems:
        raise ExportVerificationError(f"{where} does not reproduce the Keras model:\n  " + "\n  ".join(problems))
    return largest
