"""``export_onnx``: a task model to ONNX files for ONNX Runtime, converted by tf2onnx, verified.

The directory it writes::

    path/
      model.onnx           every model: predict_ids' inputs (int32, dynamic batch and
                           sequence) → ``logits``
      decoder_step.onnx    CausalLM, Seq2Seq: ``token_ids`` (batch, q), ``positions`` (batch, q)
                           (= cache slots), ``past_key_{i}`` / ``past_value_{i}`` (batch,
                           kv_heads, cache_length, head_dim) per layer [, ``cross_key_{i}`` /
                           ``cross_value_{i}``, ``encoder_padding_mask``] → ``logits`` (batch, q,
                           vocab), ``present_key_{i}`` / ``present_value_{i}``
      encoder.onnx         Seq2Seq: ``encoder_token_ids``, ``encoder_padding_mask`` →
                           ``cross_key_{i}``, ``cross_value_{i}`` (batch, kv_heads, src, head_dim)
      generation.json      what the generate loop needs (layers, heads, pad id, max_length)
      onnx_generate.py     that loop: NumPy + onnxruntime only (:class:`OnnxGenerator`)

tf2onnx reports "Successfully converted" even when the file cannot run (an XLA-marked
function left as ``PartitionedCall``, an op ONNX lacks), so every file is checked with
``onnx.checker``, opened in ONNX Runtime and compared with TensorFlow (≤ 1e-4) on two batch
sizes and sequence lengths; generative models must also give Keras' greedy ids through
:class:`OnnxGenerator`. Any failure raises :class:`ExportVerificationError` and writes nothing.

Range checks: ONNX cannot raise, so the checks the Keras model makes become values. A row
with an id outside ``[0, vocab_size)`` (``segment_ids``: ``[0, type_vocab_size)``), a mask
value other than 0/1, or, in ``decoder_step``, a position outside ``[0, min(cache length,
max_length))`` gets NaN ``logits`` (``encoder.onnx``: NaN cross keys/values); the other rows
are unchanged, to the bit. An input longer than ``max_length`` gives NaN for the whole
batch, in the shape asked for (learned-position models used to fail with "broadcast 48 by 49",
rotary ones to answer). In ``decoder_step`` a NaN row's present keys/values are undefined:
start that row again.

As for SavedModels (:mod:`keras_transformers.export.atomic`): the directory is readable by any
user (``0755`` / ``0644``), the hidden temporary of a killed export beside it is removed by the
next export, and a second export into the same ``path`` while one runs raises
``ExportInProgressError`` at once (lock file ``.<name>.lock`` beside ``path``, removed when done).
"""

import json
import os
import re
import shutil

import numpy as np
import tensorflow as tf

from keras_transformers.export import onnx_generate
from keras_transformers.export.atomic import (
    atomic_directory,
    export_lock,
    makedirs_readable,
    remove_stale_temporaries,
    temporary_prefix,
)
from keras_transformers.export.signatures import ids_input_names, is_generative, model_config, sample_ids
from keras_transformers.export.verify import ExportVerificationError
from keras_transformers.models import CausalLM, Seq2Seq
from keras_transformers.ops import jit_compile_scope

ATOL = 1e-4


def export_onnx(model, path, opset=17, *, verify=True):
    """Convert ``model`` to ONNX files in the directory ``path`` (see the module docstring).

    Args:
        model: an ``EncoderClassifier``, ``EncoderTokenClassifier``, ``MaskedLM``,
            ``CausalLM`` or ``Seq2Seq``.
        path: a directory that does not exist yet (or is empty).
        opset: the ONNX opset (tf2onnx supports 13-18 here).
        verify: compare every file with TensorFlow in ONNX Runtime, and the ONNX generate
            loop with ``generate`` (a few seconds).

    Returns:
        ``path``.

    Raises:
        ExportInProgressError: another export into ``path`` is running.
        FileExistsError: ``path`` exists and is not empty.
        ExportVerificationError: a file is not valid ONNX, or does not match TensorFlow.

    Example:
        >>> export_onnx(lm, "lm_onnx")
        >>> from keras_transformers.export.onnx_generate import OnnxGenerator
        >>> OnnxGenerator("lm_onnx").generate([[2, 72, 105]], max_new_tokens=20)["token_ids"]
    """
    import tf2onnx

    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and os.listdir(path):
        raise FileExistsError(f"`path` {path} exists and is not empty; export_onnx writes a new directory.")
    if not model.built:
        model.build(None)
    parent = os.path.dirname(path)
    makedirs_readable(parent)
    with export_lock(os.path.join(parent, f".{os.path.basename(path)}.lock"), path):
        remove_stale_temporaries(parent, re.escape(temporary_prefix(path)) + ".*")  # of killed exports
        if os.path.exists(path) and os.listdir(path):  # written by an export that held the lock before us
            raise FileExistsError(f"`path` {path} exists and is not empty; export_onnx writes a new directory.")
        with atomic_directory(path) as work:
            graphs = _graphs(model)
            for name, (function, specs) in graphs.items():
                with jit_compile_scope(False):  # tf2onnx cannot convert functions marked for XLA
                    tf2onnx.convert.from_function(tf.function(function), input_signature=specs, opset=opset,
                                                  output_path=os.path.join(work, f"{name}.onnx"))
            if is_generative(model):
                with open(os.path.join(work, "generation.json"), "w") as f:
                    json.dump(_generation_config(model), f, indent=2)
                shutil.copy(onnx_generate.__file__, os.path.join(work, "onnx_generate.py"))
            if verify:
                for name, (function, specs) in graphs.items():
                    check_onnx_file(os.path.join(work, f"{name}.onnx"), function,
                                    [_sample_feeds(model, name, specs, batch, length)
                                     for batch, length in ((7, 9), (1, 4))])
                if is_generative(model):
                    check_onnx_generation(model, work)
    return path


def _generation_config(model):
    c = model_config(model)
    return {"seq2seq": isinstance(model, Seq2Seq), "num_layers": len(_decoder(model).blocks),
            "num_key_value_heads": c.key_value_heads, "head_dim": c.head_dim,
            "vocab_size": c.vocab_size, "pad_token_id": c.pad_token_id, "max_length": c.max_length}


def _decoder(model):
    return model.decoder if isinstance(model, Seq2Seq) else model.backbone


# ----------------------------------------------------------------------------- range checks
# ONNX has no op that raises, and tf2onnx drops TensorFlow's Assert ops, so the checks the Keras
# model makes (ids in the vocabulary, length <= max_length, 0/1 masks, positions in the table)
# are turned into values: a row that fails one gets NaN outputs, never plausible numbers, and
# the other rows of the batch are unchanged. A failing row's ids are replaced by 0 before any
# lookup (so that an id past the table does not fail the whole batch in Gather, nor -1 wrap to
# the last row). When an input is longer than max_length, every input is cut to length 1 before
# the model, whose outputs then broadcast against the NaN flags to the shape asked for (so that
# a learned position table does not fail with "broadcast 48 by 49"). The price on valid inputs
# is one multiplication by 1 of the (batch, seq, hidden) state before a CausalLM's head, or of
# the outputs of the other models, and a few (batch, seq) integer ops.

def _rows_in_range(ids, low, high):
    """``(batch,)`` bool: every entry of the row lies in ``[low, high)``. (A row's minimum and
    maximum: fewer ONNX nodes than ``reduce_all``, which matters in a small decoder step.)"""
    return tf.logical_and(tf.reduce_min(ids, axis=1) >= low, tf.reduce_max(ids, axis=1) < high)


def _rows_binary(mask):
    """``(batch,)`` bool: the row's (integer) mask holds only 0 and 1."""
    return _rows_in_range(mask, 0, 2)


def _zero_unless(valid, ids):
    """``ids`` with the rows where ``valid`` is false replaced by 0 (a multiplication: tf2onnx
    turns an integer ``tf.where`` into six nodes)."""
    return ids * tf.cast(valid, ids.dtype)[:, None]


def _nan_unless(valid, tensor, axis=None, length=None):
    """``tensor`` (batch, ...) with the rows where ``valid`` is false set to NaN; with ``axis``,
    also broadcast along it from 1 to ``length`` (the inputs were cut: see above)."""
    flag = tf.where(valid, tf.constant(1.0, tensor.dtype), tf.constant(float("nan"), tensor.dtype))
    shape = [-1] + [1] * (tensor.shape.rank - 1)
    flag = tf.reshape(flag, shape)
    if axis is not None:
        shape = [tf.shape(flag)[0]] + shape[1:]
        shape[axis] = length
        flag = tf.broadcast_to(flag, tf.stack(shape))
    return tensor * flag


def _checked_inputs(inputs, config):
    """``(valid, inputs)``: ``valid`` (batch,) bool — ids in range, masks 0/1, every sequence at
    most ``max_length`` — and the inputs to run: the ids of invalid rows replaced by 0 (masks
    left as they are), and every input cut to length 1 if one is longer than ``max_length``."""
    limits = {"segment_ids": config.type_vocab_size}
    valid, fits = None, None
    for name, tensor in inputs.items():
        ok = (_rows_binary(tensor) if name.endswith("padding_mask")
              else _rows_in_range(tensor, 0, limits.get(name, config.vocab_size)))
        valid = ok if valid is None else tf.logical_and(valid, ok)
        short = tf.shape(tensor)[1] <= config.max_length
        fits = short if fits is None else tf.logical_and(fits, short)
    valid = tf.logical_and(valid, fits)
    run = {}
    for name, tensor in inputs.items():
        tensor = tensor[:, :tf.where(fits, tf.shape(tensor)[1], 1)]
        run[name] = tensor if name.endswith("padding_mask") else _zero_unless(valid, tensor)
    return valid, run


def _graphs(model, range_checks=True):
    """``{file name: (function, [TensorSpec])}``: what each ONNX file computes.

    ``range_checks=False`` leaves out the checks above (only to measure what they cost)."""
    names = ids_input_names(model)
    c = model_config(model)
    sequence_input = "decoder_token_ids" if isinstance(model, Seq2Seq) else "token_ids"

    def forward(*ids):
        inputs = dict(zip(names, ids))
        if not range_checks:
            return {"logits": model(inputs, training=False)}
        valid, run = _checked_inputs(inputs, c)
        length = tf.shape(inputs[sequence_input])[1]
        if isinstance(model, CausalLM):  # flag the hidden states, not the larger logits
            hidden = _nan_unless(valid, model.backbone(run, training=False), 1, length)
            return {"logits": model.lm_head(hidden)}
        logits = model(run, training=False)
        return {"logits": _nan_unless(valid, logits, *((1, length) if logits.shape.rank == 3 else ()))}

    graphs = {"model": (forward, [tf.TensorSpec([None, None], tf.int32, name=n) for n in names])}
    if not is_generative(model):
        return graphs
    decoder = _decoder(model)
    layers = len(decoder.blocks)
    kv = lambda name: tf.TensorSpec([None, c.key_value_heads, None, c.head_dim], tf.float32, name=name)  # noqa: E731
    step_specs = [tf.TensorSpec([None, None], tf.int32, name="token_ids"),
                  tf.TensorSpec([None, None], tf.int32, name="positions")]
    step_specs += [kv(f"past_{part}_{i}") for i in range(layers) for part in ("key", "value")]
    seq2seq = isinstance(model, Seq2Seq)
    if seq2seq:
        step_specs += [kv(f"cross_{part}_{i}") for i in range(layers) for part in ("key", "value")]
        step_specs.append(tf.TensorSpec([None, None], tf.int32, name="encoder_padding_mask"))

    def pairs(flat):
        return [(flat[2 * i], flat[2 * i + 1]) for i in range(layers)]

    def decoder_step(token_ids, positions, *rest):
        cache = pairs(rest[:2 * layers])
        cross = pairs(rest[2 * layers:4 * layers]) if seq2seq else None
        if range_checks:
            # Positions are cache slots and rows of the position table: in [0, min(cache, max_length)).
            slots = tf.minimum(tf.shape(rest[0])[2], c.max_length)
            valid = tf.logical_and(_rows_in_range(token_ids, 0, c.vocab_size), _rows_in_range(positions, 0, slots))
            if seq2seq:
                valid = tf.logical_and(valid, _rows_binary(rest[-1]))
            token_ids, positions = _zero_unless(valid, token_ids), _zero_unless(valid, positions)
        mask = tf.cast(rest[-1], tf.bool) if seq2seq else None
        hidden, cache = decoder.call_with_cache(token_ids, positions, cache, cross, mask)
        # A failing row's present keys/values are left undefined (its slot 0 overwritten),
        # not NaN: poisoning the whole cache would cost a pass over it every step.
        outputs = {"logits": model.lm_head(_nan_unless(valid, hidden) if range_checks else hidden)}
        for i, (keys, values) in enumerate(cache):
            outputs[f"present_key_{i}"], outputs[f"present_value_{i}"] = keys, values
        return outputs

    graphs["decoder_step"] = (decoder_step, step_specs)
    if seq2seq:
        def encoder(encoder_token_ids, encoder_padding_mask):
            inputs = {"token_ids": encoder_token_ids, "padding_mask": encoder_padding_mask}
            if range_checks:
                valid, inputs = _checked_inputs(inputs, c)
            sequence = model.encoder(inputs)
            if range_checks:  # (batch, src, hidden): smaller than the keys and values of every layer
                sequence = _nan_unless(valid, sequence, 1, tf.shape(encoder_token_ids)[1])
            outputs = {}
            for i, block in enumerate(decoder.blocks):
                outputs[f"cross_key_{i}"], outputs[f"cross_value_{i}"] = block.cross_attention_layer.key_values(
                    sequence)
            return outputs

        graphs["encoder"] = (encoder, [tf.TensorSpec([None, None], tf.int32, name=n)
                                       for n in ("encoder_token_ids", "encoder_padding_mask")])
    return graphs


def _sample_feeds(model, graph, specs, batch, length):
    """Inputs for one ONNX file: real ids and masks; random keys/values for the caches."""
    ids = sample_ids(model, batch, length, seed=batch * 100 + length)
    if graph == "model":
        return {spec.name: ids[spec.name] for spec in specs}
    if graph == "encoder":
        return {name: ids[name] for name in ("encoder_token_ids", "encoder_padding_mask")}
    rng = np.random.default_rng(length)
    token_key = "decoder_token_ids" if isinstance(model, Seq2Seq) else "token_ids"
    feeds = {"token_ids": ids[token_key][:, :3],
             "positions": np.broadcast_to(np.arange(3, dtype=np.int32) + length - 3, (batch, 3)).copy()}
    for spec in specs[2:]:
        if spec.name == "encoder_padding_mask":
            feeds[spec.name] = ids["encoder_padding_mask"]
        else:
            feeds[spec.name] = rng.normal(size=(batch, spec.shape[1], length, spec.shape[3])).astype(np.float32)
    return feeds


def check_onnx_file(file_path, function, samples, atol=ATOL):
    """Check one ONNX file: ``onnx.checker``, loads in ONNX Runtime, and matches
    ``function`` (the TensorFlow it came from) within ``atol`` on each feed dict of
    ``samples``. Raises :class:`ExportVerificationError`."""
    import onnx
    import onnxruntime

    name = os.path.basename(file_path)
    try:
        onnx.checker.check_model(file_path, full_check=True)
        session = onnxruntime.InferenceSession(file_path, providers=["CPUExecutionProvider"])
    except Exception as error:  # the checker and the runtime raise their own types
        raise ExportVerificationError(f"tf2onnx wrote {name}, but it is not a valid, runnable ONNX model: "
                                      f"{type(error).__name__}: {error}") from error
    for feeds in samples:
        where = f"{name} on inputs of shape {({k: v.shape for k, v in feeds.items()})}"
        try:
            outputs = session.run(None, feeds)
        except Exception as error:
            raise ExportVerificationError(f"ONNX Runtime failed to run {where}: {error}") from error
        got = dict(zip((output.name for output in session.get_outputs()), outputs))
        with jit_compile_scope(False):
            want = function(*(tf.constant(value) for value in feeds.values()))
        for key, value in want.items():
            if key not in got:
                raise ExportVerificationError(f"{where} lacks the output {key!r} (it has {sorted(got)}).")
            difference = float(np.max(np.abs(got[key] - value.numpy()))) if value.shape.num_elements() else 0.0
            if not difference <= atol:
                raise ExportVerificationError(f"{where}: output {key!r} differs from TensorFlow by up to "
                                              f"{difference:.3g} (limit {atol:g}).")


def check_onnx_generation(model, directory, max_new_tokens=8):
    """The ONNX generate loop must give ``model.generate``'s greedy ids on sample prompts
    (batch of 3 of different lengths, and of 1). Raises :class:`ExportVerificationError`."""
    generator = onnx_generate.OnnxGenerator(directory)
    c = model_config(model)
    rng = np.random.default_rng(0)
    max_new_tokens = min(max_new_tokens, c.max_length - 5)
    for lengths in ((4, 1, 3), (2,)):
        prompts = [rng.integers(1, c.vocab_size, size=n).tolist() for n in lengths]
        stop = [int(prompts[0][-1])]  # some row may stop early
        if isinstance(model, Seq2Seq):
            sources = [rng.integers(1, c.vocab_size, size=n + 2).tolist() for n in lengths]
            want = model.generate(sources, max_new_tokens, decoder_token_ids=prompts, stop_token_ids=stop)
            want = {"token_ids": want["decoder_token_ids"], "padding_mask": want["decoder_padding_mask"]}
            got = generator.generate(prompts, max_new_tokens, stop_token_ids=stop, encoder_token_ids=sources)
        else:
            want = model.generate(prompts, max_new_tokens, stop_token_ids=stop)
            got = generator.generate(prompts, max_new_tokens, stop_token_ids=stop)
        for key in ("token_ids", "padding_mask"):
            if not np.array_equal(np.where(want["padding_mask"], want[key], 0), np.where(got["padding_mask"], got[key], 0)):
                raise ExportVerificationError(
                    f"The ONNX generate loop gives other ids than {type(model).__name__}.generate for prompts "
                    f"{prompts}:\n  ONNX  {got['token_ids'].tolist()}\n  Keras {want['token_ids'].tolist()}")
