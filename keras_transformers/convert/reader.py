"""The shared reader of Hugging Face checkpoints: ``config.json`` and safetensors files, tensors
by name with checks, and the assignment helpers every family's importer uses (our attention
kernels are ``(hidden, heads, head_dim)`` / ``(heads, head_dim, hidden)``; Hugging Face linear
weights are ``(out, in)``). No PyTorch."""

import dataclasses
import json
import os
import re
import warnings
from typing import Callable

import numpy as np


class CheckpointError(ValueError):
    """A checkpoint that cannot be imported: missing, unexpected or non-finite tensor, wrong
    shape, unknown layout, unreadable ``config.json``."""


@dataclasses.dataclass(frozen=True)
class Family:
    """One family of checkpoints (one module of :mod:`keras_transformers.convert` each):
    what :func:`~keras_transformers.convert.from_huggingface` needs to import it.

    Attributes:
        model_types: the ``config.json`` ``model_type`` values it reads.
        make_config: ``(hf, model_type) -> TransformerConfig`` from ``config.json``'s values.
        build: ``(config, task, dtype) -> model``, built (its variables exist).
        load: ``(tensors, model, model_type, task)``: assign the checkpoint's tensors (a
            :class:`_Tensors` with the family's prefix) to the model's variables.
        prefixes: ``model_type -> tensor-name prefixes`` to try (``"model."``, ``"bert."``).
        not_imported: ``task -> regex patterns`` of tensors the model does not read by design
            (buffers, other tasks' heads), which the strict check allows.
        tasks: the ``task`` values it accepts besides ``None``.
    """

    model_types: tuple
    make_config: Callable
    build: Callable
    load: Callable
    prefixes: Callable = lambda model_type: ("",)
    not_imported: Callable = lambda task: BUFFERS
    tasks: tuple = ()


def build_causal_lm(config, task, dtype):
    """A :class:`Family` ``build``: a built :class:`~keras_transformers.CausalLM` (GPT-2, Llama family)."""
    from keras_transformers.models.decoder import CausalLM, Decoder

    model = CausalLM(Decoder(config, dtype=dtype), dtype=dtype)
    model.build()
    return model


def build_seq2seq(config, task, dtype):
    """A :class:`Family` ``build``: a built :class:`~keras_transformers.Seq2Seq` (BART, T5)."""
    from keras_transformers.models.seq2seq import Seq2Seq

    model = Seq2Seq(config, dtype=dtype)
    model.build()
    return model


# Buffers checkpoints carry that no model imports: causal-mask and rotary tables, position ids.
BUFFERS = (r"(.*\.)?position_ids", r".*\.attn\.(masked_)?bias", r".*rotary_emb\.inv_freq")

# Hugging Face activation names → ours.
_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_approximate", "gelu_pytorch_tanh": "gelu_approximate",
                "gelu_fast": "gelu_approximate", "relu": "relu", "silu": "swiglu"}


def hf_activation(name, key):
    """Our activation for ``config.json``'s ``key: name``; a clear error for one we lack."""
    if name not in _ACTIVATIONS:
        raise CheckpointError(f"Unsupported activation {name!r} in config.json ({key}); "
                              f"supported: {sorted(_ACTIVATIONS)}.")
    return _ACTIVATIONS[name]


# --------------------------------------------------------------------------- reading files

def read_tensors(path, allow_pickle=False):
    """All tensors of a checkpoint directory as ``{name: np.ndarray}``.

    Reads ``model.safetensors`` (and sharded ``model-0000x-of-0000y.safetensors``) with
    safetensors' NumPy API (bfloat16 tensors come as ``ml_dtypes.bfloat16`` arrays and are
    widened to float32 one at a time, when assigned). A pickled ``pytorch_model.bin`` can run
    arbitrary code when loaded, so it is refused unless ``allow_pickle=True`` and PyTorch is
    installed; it is then read with ``torch.load(weights_only=True)``.
    """
    path = os.fspath(path)
    files = sorted(name for name in os.listdir(path) if name.endswith(".safetensors"))
    if files:
        import ml_dtypes  # noqa: F401  (registers bfloat16 with NumPy: most Llama checkpoints are bf16)
        from safetensors.numpy import load_file

        tensors = {}
        for name in files:
            try:
                tensors.update(load_file(os.path.join(path, name)))
            except Exception as error:  # safetensors raises its own SafetensorError, without the path
                raise CheckpointError(f"{os.path.join(path, name)} is not a readable safetensors file "
                                      f"({type(error).__name__}: {error}).") from error
        return tensors
    pickled = os.path.join(path, "pytorch_model.bin")
    if os.path.exists(pickled):
        if not allow_pickle:
            raise CheckpointError(
                f"{pickled} is a pickled PyTorch checkpoint, which can run arbitrary code when "
                "loaded; it is refused. Convert it to model.safetensors, or pass allow_pickle=True "
                "(needs torch; read with torch.load(weights_only=True)).")
        try:
            import torch
        except ImportError as error:
            raise CheckpointError(f"allow_pickle=True needs PyTorch to read {pickled}; "
                                  "pip install torch, or convert it to model.safetensors.") from error
        state = torch.load(pickled, map_location="cpu", weights_only=True)
        return {name: tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
                for name, tensor in state.items()}
    raise CheckpointError(f"No model.safetensors (nor pytorch_model.bin) in {path}.")


class _Config(dict):
    """``config.json`` as a dict whose missing keys raise :class:`CheckpointError` naming the
    key and the file (``hf["n_embd"]``), not a bare ``KeyError``."""

    def __init__(self, values, path):
        super().__init__(values)
        self.path = path

    def __missing__(self, key):
        raise CheckpointError(f"{self.path} has no {key!r}, which model_type={self.get('model_type')!r} needs.")


def _read_json(json_path):
    """A JSON object from ``json_path``; any failure is a :class:`CheckpointError` naming the file."""
    try:
        with open(json_path, encoding="utf-8") as file:
            values = json.load(file)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{json_path} is not readable JSON ({type(error).__name__}: {error}).") from error
    if not isinstance(values, dict):
        raise CheckpointError(f"{json_path} must hold a JSON object, got {type(values).__name__}.")
    return values


def read_config(path):
    """``config.json`` of a checkpoint directory. Errors name the file: a missing or unreadable
    file, invalid JSON, and later a missing key (``hf[key]``) raise :class:`CheckpointError`."""
    config_path = os.path.join(os.fspath(path), "config.json")
    if not os.path.exists(config_path):
        raise CheckpointError(f"No config.json in {os.fspath(path)}.")
    return _Config(_read_json(config_path), config_path)


class _Tensors:
    """Checkpoint tensors by name, with the prefix (``bert.``, ``transformer.``, ``model.``)
    found once; errors name the checkpoint tensor and our variable."""

    def __init__(self, tensors, prefixes, used=None):
        self.tensors = tensors
        self.used = set() if used is None else used  # full names read, for the strict check
        self.prefix = ""
        for prefix in prefixes:
            if any(name.startswith(prefix) for name in tensors):
                self.prefix = prefix
                break

    def has(self, name, absolute=False):
        return (name if absolute else self.prefix + name) in self.tensors

    def get(self, name, absolute=False):
        full = name if absolute else self.prefix + name
        if full not in self.tensors:
            raise CheckpointError(f"The checkpoint has no tensor {full!r}.")
        value = np.asarray(self.tensors[full], dtype=np.float32)
        finite = np.isfinite(value)
        if not finite.all():
            bad = np.argwhere(~finite)[0]
            raise CheckpointError(
                f"Tensor {full!r} holds {int(value.size - finite.sum())} non-finite value(s) (NaN or inf), "
                f"the first {value[tuple(bad)]} at index {tuple(int(i) for i in bad)}; a corrupted or "
                "diverged checkpoint is refused.")
        self.used.add(full)
        return value, full

    def assign(self, variable, name, transform=None, absolute=False):
        value, full = self.get(name, absolute)
        if transform is not None:
            try:
                value = transform(value)
            except ValueError as error:
                raise CheckpointError(f"Tensor {full!r} of shape {self.tensors[full].shape} does not fit "
                                      f"{variable.path} of shape {tuple(variable.shape)}: {error}") from None
        if tuple(value.shape) != tuple(variable.shape):
            raise CheckpointError(f"Tensor {full!r} has shape {tuple(self.tensors[full].shape)}; "
                                  f"{variable.path} needs {tuple(variable.shape)}.")
        variable.assign(value)


def _check_tied_copy(t, copy, original):
    """A checkpoint may store a tied matrix twice (GPT-2's ``lm_head.weight``); our model
    has it once, so the copy must be the same numbers, or the import would be wrong."""
    if t.has(copy, absolute=True):
        value, _ = t.get(copy, absolute=True)
        reference, full = t.get(original)
        if value.shape != reference.shape or not np.array_equal(value, reference):
            raise CheckpointError(f"Tensor {copy!r} should be a copy of the tied {full!r} but differs; "
                                  "this model ties them, so the checkpoint cannot be imported as it is.")


def _check_unexpected(tensors, used, allowed_patterns, strict, path):
    """Refuse (``strict``) or warn about checkpoint tensors that nothing read: an extra layer,
    a tensor of another architecture. Known buffers and other tasks' heads are allowed."""
    allowed = re.compile("|".join(f"(?:{pattern})" for pattern in allowed_patterns))
    unexpected = sorted(name for name in tensors if name not in used and not allowed.fullmatch(name))
    if not unexpected:
        return
    shown = ", ".join(map(repr, unexpected[:5])) + (f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else "")
    message = (f"The checkpoint {os.fspath(path)} has {len(unexpected)} tensor(s) this model does not use: "
               f"{shown} (a config.json that does not match the weights, e.g. fewer layers?).")
    if strict:
        raise CheckpointError(message + " Pass strict=False to import anyway, ignoring them.")
    warnings.warn(message + " Ignored (strict=False).", stacklevel=3)


def _linear(out_features_first=True):
    return (lambda w: w.T) if out_features_first else (lambda w: w)


def _assign_attention(t, attention, names, transposed=True):
    """``names``: (q, k, v, o) prefixes of ``.weight``/``.bias``; HF linear weights are (out, in)."""
    heads, kv_heads, dim = attention.num_heads, attention.num_key_value_heads, attention.head_dim
    for (kernel, bias, count), name in zip(
            ((attention.query_kernel, attention.query_bias, heads),
             (attention.key_kernel, attention.key_bias, kv_heads),
             (attention.value_kernel, attention.value_bias, kv_heads)), names[:3]):
        t.assign(kernel, name + ".weight",
                 lambda w, c=count: (w.T if transposed else w).reshape(-1, c, dim))
        if bias is not None:
            t.assign(bias, name + ".bias", lambda b, c=count: b.reshape(c, dim))
    t.assign(attention.output_kernel, names[3] + ".weight",
             lambda w: (w.T if transposed else w).reshape(heads, dim, -1))
    if attention.output_bias is not None:
        t.assign(attention.output_bias, names[3] + ".bias")


def _assign_dense(t, dense, name, transposed=True):
    t.assign(dense.kernel, name + ".weight", (lambda w: w.T) if transposed else None)
    if dense.use_bias:
        t.assign(dense.bias, name + ".bias")


def _assign_norm(t, norm, name, weight="weight", bias="bias"):
    if hasattr(norm, "gamma"):  # keras LayerNormalization
        t.assign(norm.gamma, f"{name}.{weight}")
        t.assign(norm.beta, f"{name}.{bias}")
    else:  # RMSNorm
        t.assign(norm.scale, f"{name}.{weight}")


def _positions(offset):
    def drop(table):
        return table[offset:]
    return drop


# --------------------------------------------------------------------------- config mapping

def _model_config(make, hf, *args):
    """Our config from ``config.json``'s values; a value our config refuses (a string for a
    size, a width that heads do not divide) is a :class:`CheckpointError` naming the file."""
    try:
        return make(hf, *args)
    except CheckpointError:
        raise
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{hf.path} does not describe a model we can build: {error}") from error
