"""``export_savedmodel``: a task model to a TF Serving model directory, verified.

The layout TF Serving polls::

    export_dir/
      1/                                  a version: an integer, the next one by default
        saved_model.pb, variables/        signatures ``serving_default`` and ``predict_ids``
        assets/export.json                signatures (input/output names, dtypes, shapes),
                                          generation settings, versions
        assets/model_config.json          the Keras model's config
        assets/label_names.txt            classifier / tagger classes, one per line
        assets/tokenizer/                 the tokenizer's files (e.g. vocabulary.txt)
        assets.extra/tf_serving_warmup_requests

A version appears whole or not at all: it is written and verified in a hidden temporary
directory inside ``export_dir`` (TF Serving ignores names that are not integers), then renamed
into place in one ``os.rename``. Any failure, Ctrl-C included, removes the temporary directory;
the temporary directory of an export that was killed (``SIGKILL``) is removed by the next
export. Versions are readable by any user (directories ``0755``, files ``0644``): TF Serving
usually runs as another user. One export at a time per ``export_dir``: a second export
started while one runs raises :class:`~keras_transformers.export.atomic.ExportInProgressError`
at once (a ``fcntl.flock`` lock on ``export_dir/.export.lock``, removed when done).
"""

import json
import os
import re

import keras
import numpy as np
import tensorflow as tf

from keras_transformers.export.atomic import (
    atomic_directory,
    export_lock,
    makedirs_readable,
    remove_stale_temporaries,
)
from keras_transformers.export.serving_ops import assert_no_xla, assert_serving_ops
from keras_transformers.export.signatures import (
    TEXT_INPUT,
    generation_settings,
    has_text_signature,
    is_generative,
    model_config,
    sample_ids,
    sample_texts,
    serving_functions,
)
from keras_transformers.export.verify import compare_outputs, reference_outputs, replay_in_fresh_process
from keras_transformers.export.warmup import write_warmup_requests
from keras_transformers.ops import jit_compile_scope

LOCK_NAME = ".export.lock"  # hidden: TF Serving only looks at integer names
STALE_TEMPORARIES = r"\.\d+\.tmp-.*"  # atomic_directory's temporaries of version directories


def export_savedmodel(model, export_dir, version=None, *, generation=None, jit_compile=False,
                      texts=None, verify=True, model_name=None):
    """Export ``model`` for TF Serving as ``export_dir/<version>/``, checked before it appears.

    Signatures (names and shapes in :mod:`keras_transformers.export.signatures`):
    ``serving_default``, raw text in (``text``, ``(batch,)`` strings) and the task's answer
    out, when the model has its preprocessor; ``predict_ids``, token ids and padding masks in,
    ``logits`` out.

    Before the version directory appears, the export

    * writes warmup requests (``texts``, a batch of all and of one; random ids for
      ``predict_ids``) to ``assets.extra/tf_serving_warmup_requests``;
    * checks every op against TF Serving's (:func:`assert_serving_ops`) and, unless
      ``jit_compile``, that no function is marked for XLA;
    * with ``verify``, replays the warmup requests in a fresh process that has TensorFlow
      only, and compares them with the Keras model: float outputs within 1e-5, labels, tags
      and generated ids and text identical. Any failure raises and leaves no version.

    Args:
        model: an ``EncoderClassifier``, ``EncoderTokenClassifier``, ``MaskedLM``,
            ``CausalLM`` or ``Seq2Seq``.
        export_dir: the model's directory (TF Serving's ``--model_base_path``).
        version: a positive integer; default one more than the largest version there.
        generation: decoding settings fixed in a generative model's ``serving_default``
            (``max_new_tokens`` (32), ``temperature``, ``top_k``, ``top_p``, ``num_beams``,
            ``length_penalty``, ``stop_token_ids`` (the preprocessor's end token), ``seed``).
        jit_compile: keep XLA in the graph (for GPU serving, or TF Serving started with
            ``--xla_cpu_compilation_enabled``); default ``False``, which any TF Serving runs.
        texts: the sample texts of the warmup requests and the verification.
        verify: run the fresh-process verification (about 10 s).
        model_name: ``model_spec.name`` of the warmup requests (default: ``export_dir``'s name).

    Returns:
        The path of the version directory, ``export_dir/<version>``.

    Raises:
        ExportInProgressError: another export into ``export_dir`` is running.
        FileExistsError: ``version`` exists already.
        ExportVerificationError: the export does not reproduce the Keras model.

    Example:
        >>> path = export_savedmodel(classifier, "serving/sentiment")   # serving/sentiment/1
        >>> # docker run -p 8501:8501 -v $PWD/serving/sentiment:/models/sentiment \\
        >>> #     -e MODEL_NAME=sentiment tensorflow/serving
    """
    if not model.built:
        model.build(None)
    settings = None
    if is_generative(model) and has_text_signature(model):
        settings = generation_settings(model, **(generation or {}))
    elif generation:
        raise ValueError(f"`generation` settings apply to a CausalLM or Seq2Seq with its preprocessor; "
                         f"this {type(model).__name__} has no text generation signature.")
    if version is not None:
        version = _check_version(version)
    export_dir = os.path.abspath(os.fspath(export_dir))
    makedirs_readable(export_dir)
    with export_lock(os.path.join(export_dir, LOCK_NAME), export_dir):
        remove_stale_temporaries(export_dir, STALE_TEMPORARIES)  # of killed exports: none is running
        version = _next_version(export_dir) if version is None else version
        target = os.path.join(export_dir, str(version))
        if os.path.exists(target):
            raise FileExistsError(f"Version {version} already exists at {target}; a served version is never "
                                  "overwritten. Pass another `version`, or leave it out to get the next one.")
        with atomic_directory(target) as work:
            signatures = _save(model, work, settings, jit_compile)
            requests = _sample_requests(model, signatures, texts)
            write_warmup_requests(work, requests, model_name or os.path.basename(export_dir))
            _write_assets(model, work, settings, signatures, jit_compile)
            assert_serving_ops(work)
            if not jit_compile:
                assert_no_xla(work)
            if verify:
                expected = [reference_outputs(model, name, inputs, settings) for name, inputs in requests]
                for (name, inputs), want, got in zip(requests, expected, replay_in_fresh_process(work)):
                    shape = {key: np.shape(value) for key, value in inputs.items()}
                    compare_outputs(want, got, f"Signature {name!r} on inputs of shape {shape}")
    return target


def _next_version(export_dir):
    versions = [int(name) for name in os.listdir(export_dir) if re.fullmatch(r"\d+", name)]
    return max(versions, default=0) + 1


def _check_version(version):
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
        raise ValueError(f"`version` must be a positive integer (TF Serving's version directory), got {version!r}.")
    return int(version)


def _save(model, path, settings, jit_compile):
    """Trace the signatures and write the SavedModel; returns ``{name: (concrete function,
    {input name: TensorSpec})}``."""
    module = tf.Module()
    # Track what the graphs read (weights; the tokenizer's lookup tables) but not the Keras
    # model itself, whose automatic Keras signature would assume float inputs.
    module.model_variables = [variable.value for variable in model.variables]  # the tf.Variables
    if model.preprocessor is not None:
        module.preprocessor = model.preprocessor
    functions = serving_functions(model, settings)
    with jit_compile_scope(jit_compile):  # the attention core and the decode loop
        concrete = {name: tf.function(function).get_concrete_function(**specs)
                    for name, (function, specs) in functions.items()}
    tf.saved_model.save(module, path, signatures=concrete)
    return {name: (concrete[name], specs) for name, (_, specs) in functions.items()}


def _sample_requests(model, signatures, texts):
    """Warmup and verification requests: each signature on a full batch and on one example."""
    texts = list(sample_texts() if texts is None else texts)
    if not texts:
        raise ValueError("`texts` is empty; pass at least one sample text.")
    length = min(9, model_config(model).max_length)
    requests = []
    for name, (_, specs) in signatures.items():
        if TEXT_INPUT in specs:
            batches = [texts, texts[:1]]
            requests += [(name, {TEXT_INPUT: np.array(batch, dtype=object)}) for batch in batches]
        else:
            requests += [(name, sample_ids(model, len(texts), length, seed=0)),
                         (name, sample_ids(model, 1, max(length // 2, 1), seed=1))]
    return requests


def _describe(specs):
    return {name: {"dtype": spec.dtype.name, "shape": [d for d in spec.shape.as_list()]}
            for name, spec in specs.items()}


def _write_assets(model, path, settings, signatures, jit_compile):
    import keras_transformers

    assets = os.path.join(path, "assets")
    os.makedirs(assets, exist_ok=True)
    description = {
        "model": type(model).__name__,
        "keras_transformers": keras_transformers.__version__,
        "tensorflow": tf.__version__,
        "jit_compile": bool(jit_compile),
        "generation": settings,
        "signatures": {name: {"inputs": _describe(specs), "outputs": _describe(concrete.structured_outputs)}
                       for name, (concrete, specs) in signatures.items()},
    }
    with open(os.path.join(assets, "export.json"), "w") as f:
        json.dump(description, f, indent=2)
    with open(os.path.join(assets, "model_config.json"), "w") as f:
        json.dump(keras.saving.serialize_keras_object(model), f, indent=2, default=str)
    label_names = getattr(model, "label_names", None) or getattr(model.preprocessor, "label_names", None)
    if label_names:
        with open(os.path.join(assets, "label_names.txt"), "w") as f:
            f.write("".join(f"{name}\n" for name in label_names))
    tokenizer = getattr(model.preprocessor, "tokenizer", None)
    if hasattr(tokenizer, "save_assets"):
        os.makedirs(os.path.join(assets, "tokenizer"), exist_ok=True)
        tokenizer.save_assets(os.path.join(assets, "tokenizer"))
