"""Weight-only int8 for ``model.quantize("int8")``: the shared helpers and the layer mixins.

A float kernel is viewed as a matrix ``W`` of shape ``(in, out)`` (a projection's fan-in by its
fan-out) and stored **output-major**, as ``Q`` of shape ``(out, in)`` int8 with one float32
scale per output channel (row of ``Q``), symmetric abs-max:

    s_o = max_i |W[i, o]| / 127          (1 where a column is all zeros)
    Q[o, i] = round(W[i, o] / s_o)        in [-127, 127]
    x·W ≈ (x·Qᵀ) · s                      (the scale is applied to the product's columns)

Only the weights are int8; inputs and the product stay float (weight-only int8). Decoding at
batch 1 is a matrix-vector product, bound by reading the weights: with ``Q`` output-major,
:func:`int8_matmul` is ``x·Qᵀ`` (:func:`~keras_transformers.ops.matmul_transposed`), which XLA
on CPU fuses with the ``int8 → float`` conversion of ``Q``, so each weight is read once as one
byte (4x fewer bytes than float32), provided the conversion stays inside the decoding loop:
``matmul_transposed`` ties ``Q`` to the loop's row so that XLA cannot hoist it out as a float32
copy of the kernel, read at every step as 4 bytes a weight (int8 decoding was then barely
faster than float32). Measured on XLA/CPU (benchmarks/quantize_decode.py):
a dequantized ``(in, out)`` kernel is not fused that way (read column by column, or
materialized as float32: slower than float32), and Keras' own int8 ``Dense`` (inputs quantized
too, int8 x int8 → int32) was no faster than float32 at one row inside a decoding step.

Embedding tables ``E`` ``(vocab, hidden)`` are already output-major for the tied head
``h·Eᵀ``: one scale per row (token), so a lookup is ``Q[id]·s_id`` and the head ``(h·Qᵀ)·s``.

Quantized layers follow Keras' protocol: ``quantize("int8")`` replaces the float kernels by
non-trainable int8 ones plus scales and sets the dtype policy ``int8_from_<policy>``; a layer
whose policy says int8 builds them directly (``quantized_build``); calls go through
``quantized_call`` → ``_int8_call``. Loading: a float-built layer that meets an int8 file
(more stored variables than its float form has) converts itself first, so a quantized
model's ``.keras`` file loads whatever dtype its sublayers were constructed with.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_transformers.ops.matmul import matmul_rows, matmul_transposed

INT8_MAX = 127.0


def abs_max_quantize(values):
    """Per-row symmetric abs-max int8 of a float array ``(..., out, in)``.

    Returns ``(Q, s)``: ``Q`` ``(..., out, in)`` int8 ``= round(values / s[..., None])`` and
    ``s`` ``(..., out)`` float32 ``= max|values[..., o, :]| / 127`` (1 for an all-zero row), so
    that ``|values - Q·s| <= s/2`` elementwise.
    """
    values = np.asarray(values, np.float32)
    amax = np.max(np.abs(values), axis=-1)
    scale = np.where(amax > 0, amax / INT8_MAX, 1.0).astype(np.float32)
    quantized = np.clip(np.round(values / scale[..., None]), -INT8_MAX, INT8_MAX).astype(np.int8)
    return quantized, scale


def assign_int8(kernel, scale, values):
    """Fill an int8 ``kernel`` ``(..., out, in)`` and its ``scale`` ``(..., out)`` with
    :func:`abs_max_quantize` of the float ``values`` (already output-major)."""
    quantized, row_scale = abs_max_quantize(values)
    kernel.assign(quantized)
    scale.assign(row_scale)


def int8_matmul(x, kernel, scale):
    """``(x·Qᵀ)·s``: ``x`` ``(..., in)`` float, ``kernel`` ``Q`` ``(out, in)`` int8, ``scale``
    ``(out,)`` → ``(..., out)`` in ``x``'s dtype.

    The product is :func:`~keras_transformers.ops.matmul_transposed`, which converts ``Q``:
    at one row under XLA the ``int8 → float`` conversion is fused into the product (the kernel
    is read once, as bytes) and kept inside a decoding loop (not hoisted out of it as a
    float32 copy).
    """
    return matmul_transposed(x, kernel) * tf.cast(scale, x.dtype)


def int8_gather(table, scale, ids, dtype):
    """Rows ``Q[ids]·s[ids]`` of an int8 table ``(rows, width)`` with row scales ``(rows,)``:
    ``ids`` ``(...)`` → ``(..., width)`` in ``dtype``."""
    rows = tf.cast(tf.gather(table, ids), dtype)
    return rows * tf.cast(tf.gather(scale, ids), dtype)[..., None]


def float_policy(layer):
    """The layer's float dtype policy: ``mixed_bfloat16`` for ``int8_from_mixed_bfloat16``."""
    policy = layer.dtype_policy
    if policy.quantization_mode is None:
        return policy
    return keras.dtype_policies.get(policy.name.split("_from_", 1)[1])


def set_int8_policy(layer):
    if layer.dtype_policy.quantization_mode is None:
        layer.dtype_policy = keras.dtype_policies.get(f"int8_from_{layer.dtype_policy.name}")


def check_mode(layer, mode):
    if mode != "int8":
        raise NotImplementedError(
            f"Layer '{layer.name}' ({type(layer).__name__}) supports only quantize('int8'), got {mode!r}.")


def check_not_quantized(layer):
    """Raise if ``layer`` is int8: its kernels are frozen bytes, LoRA needs the float kernel."""
    if layer.quantization_mode is not None:
        raise ValueError(
            f"Cannot enable LoRA on layer '{layer.name}': it is quantized "
            f"({layer.dtype_policy.name}). Enable LoRA (and merge it) before quantizing.")


def drop_variable(layer, attribute):
    """``del layer.<attribute>`` (a float kernel being replaced) as Keras' ``Layer.__delattr__``
    does, less its ``gc.collect()`` per variable (half a minute over a gpt2_small)."""
    layer._untrack_variable(getattr(layer, attribute))
    object.__delattr__(layer, attribute)


def add_int8(layer, name, shape):
    """A non-trainable int8 kernel ``name`` ``(..., out, in)`` and its scale ``name_scale``
    ``(..., out)``."""
    kernel = layer.add_weight(name=name, shape=shape, initializer="zeros", dtype="int8", trainable=False)
    scale = layer.add_weight(name=f"{name}_scale", shape=shape[:-1], initializer="ones", trainable=False)
    return kernel, scale


def convert_if_int8_store(layer, store, float_count, int8_extra):
    """Before loading: a float layer whose store holds its int8 form converts itself."""
    if layer.quantization_mode is None and len(store) == float_count + int8_extra:
        layer.quantize("int8")


class Int8TableMixin:
    """Int8 for one-table layers (token / position embeddings): the table attribute named by
    ``_table_attr`` (weight name ``embeddings``) becomes int8 ``(rows, width)`` with the row
    scales in ``<attr>_scale`` ``(rows,)``; the layer's ``call`` reads rows with :meth:`rows`."""

    _table_attr = "embeddings"

    def _build_table(self, shape, initializer):
        if self.quantization_mode == "int8":
            table, scale = add_int8(self, "embeddings", shape)
            setattr(self, self._table_attr, table)
            setattr(self, f"{self._table_attr}_scale", scale)
            self._is_quantized = True
        else:
            setattr(self, self._table_attr, self.add_weight(name="embeddings", shape=shape,
                                                             initializer=initializer))

    def rows(self, ids):
        """``table[ids]`` in the compute dtype (dequantized when int8)."""
        table = getattr(self, self._table_attr)
        if self.quantization_mode == "int8":
            return int8_gather(table, getattr(self, f"{self._table_attr}_scale"), ids, self.compute_dtype)
        return tf.gather(tf.cast(table, self.compute_dtype), ids)

    def quantize(self, mode=None, type_check=True, config=None):
        check_mode(self, mode)
        values = getattr(self, self._table_attr).numpy()
        drop_variable(self, self._table_attr)
        table, table_scale = add_int8(self, "embeddings", values.shape)
        assign_int8(table, table_scale, values)
        setattr(self, self._table_attr, table)
        setattr(self, f"{self._table_attr}_scale", table_scale)
        self._is_quantized = True
        set_int8_policy(self)

    def _int8_call(self, *args, **kwargs):
        return self.call(*args, **kwargs)

    def load_own_variables(self, store):
        convert_if_int8_store(self, store, 1, 1)
        super().load_own_variables(store)


class Int8AttentionMixin:
    """Int8 for :class:`~keras_transformers.layers.MultiHeadAttention`.

    Each projection kernel becomes ``<name>_kernel`` int8, output-major ``(out, in)``:
    ``(heads·dim, hidden)`` for ``query``/``key``/``value`` (from ``(hidden, heads, dim)``),
    ``(hidden, heads·dim)`` for ``output`` (from ``(heads, dim, hidden)``), and
    ``<name>_kernel_scale`` ``(out,)``. Biases stay float and trainable.
    """

    @staticmethod
    def _fan_in(name, shape):
        return shape[0] * shape[1] if name == "output" else shape[0]

    def _int8_kernel(self, name, kernel_shape):
        fan_in = self._fan_in(name, kernel_shape)
        kernel, scale = add_int8(self, f"{name}_kernel", (int(np.prod(kernel_shape)) // fan_in, fan_in))
        setattr(self, f"{name}_kernel_scale", scale)
        self._is_quantized = True
        return kernel

    def quantize(self, mode=None, type_check=True, config=None):
        check_mode(self, mode)
        if self.lora_rank is not None:
            raise ValueError(f"Cannot quantize layer '{self.name}' while LoRA is enabled on it: "
                             "merge the adapters first (training.lora.merge_lora).")
        values = {}
        for name in self._PROJECTIONS:
            kernel = getattr(self, f"{name}_kernel")
            values[name] = kernel.numpy()
            drop_variable(self, f"{name}_kernel")
        for name in self._PROJECTIONS:
            value = values[name]
            kernel = self._int8_kernel(name, value.shape)
            assign_int8(kernel, getattr(self, f"{name}_kernel_scale"),
                        value.reshape(self._fan_in(name, value.shape), -1).T)
            setattr(self, f"{name}_kernel", kernel)
        set_int8_policy(self)

    def _int8_input_projection(self, name, x):
        """``(batch, seq, in) → (batch, heads, seq, dim)`` through the int8 ``name`` kernel."""
        heads = self.num_heads if name == "query" else self.num_key_value_heads
        projected = int8_matmul(x, getattr(self, f"{name}_kernel"), getattr(self, f"{name}_kernel_scale"))
        shape = tf.shape(x)
        projected = tf.transpose(tf.reshape(projected, [shape[0], shape[1], heads, self.head_dim]), [0, 2, 1, 3])
        bias = getattr(self, f"{name}_bias")
        return projected if bias is None else projected + bias[:, None, :]

    def _int8_output_projection(self, outputs):
        """``(batch, heads, seq, dim) → (batch, seq, hidden)`` through the int8 output kernel."""
        shape = tf.shape(outputs)
        merged = tf.reshape(tf.transpose(outputs, [0, 2, 1, 3]), [shape[0], shape[2], self.num_heads * self.head_dim])
        return int8_matmul(merged, self.output_kernel, self.output_kernel_scale)

    def _int8_call(self, *args, **kwargs):
        return self.call(*args, **kwargs)

    def load_own_variables(self, store):
        if self.lora_rank is None:
            convert_if_int8_store(self, store, len(self.weights), len(self._PROJECTIONS))
        super().load_own_variables(store)


@keras.saving.register_keras_serializable(package="keras_transformers")
class Int8Dense(keras.layers.Dense):
    """``keras.layers.Dense`` whose ``quantize("int8")`` is weight-only and output-major.

    Float behaviour, variables and checkpoint layout are ``Dense``'s (the product is
    :func:`~keras_transformers.ops.matmul_rows`). Int8: ``kernel`` ``Q``
    ``(units, in)`` int8 and ``kernel_scale`` ``s`` ``(units,)``, ``y = (x·Qᵀ)·s + b``
    (:func:`int8_matmul`); Keras' own int8 ``Dense`` keeps ``(in, units)`` and quantizes the
    inputs too. A float-built ``Int8Dense`` loads an int8 file (it converts itself first).
    """

    def quantize(self, mode=None, type_check=True, config=None):
        check_mode(self, mode)
        if self.lora_enabled:
            raise ValueError(f"Cannot quantize layer '{self.name}' while LoRA is enabled on it: "
                             "merge the adapters first.")
        kernel = self._kernel.numpy()
        drop_variable(self, "_kernel")
        self.quantized_build(kernel.shape, mode, config)
        assign_int8(self._kernel, self.kernel_scale, kernel.T)
        set_int8_policy(self)

    def call(self, inputs, training=None):
        # Dense's float call, with one row (decoding at batch 1) in XLA's fast form (matmul_rows).
        x = matmul_rows(inputs, self.kernel, matmul=keras.ops.matmul)
        if self.bias is not None:
            x = keras.ops.add(x, self.bias)
        return self.activation(x) if self.activation is not None else x

    def _int8_build(self, kernel_shape, config=None):
        self._kernel, self.kernel_scale = add_int8(self, "kernel", (kernel_shape[1], kernel_shape[0]))

    def _int8_call(self, inputs, training=None):
        x = int8_matmul(inputs, self._kernel, self.kernel_scale)
        if self.bias is not None:
            x = x + tf.cast(self.bias, x.dtype)
        return self.activation(x) if self.activation is not None else x

    def enable_lora(self, *args, **kwargs):
        check_not_quantized(self)
        return super().enable_lora(*args, **kwargs)

    def load_own_variables(self, store):
        if not self.lora_enabled:
            convert_if_int8_store(self, store, 2 if self.use_bias else 1, 1)
        super().load_own_variables(store)
