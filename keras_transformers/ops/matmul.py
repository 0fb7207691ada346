"""Products with a weight whose one-row case (decoding at batch 1) XLA on CPU runs far faster
when written differently: :func:`matmul_rows` ``x·K`` for an input-major kernel ``(in, out)``
(attention and feed-forward projections) and :func:`matmul_transposed` ``x·Wᵀ`` for an
output-major weight ``W`` ``(out, in)`` (the tied head's embedding table, an int8 kernel).
:func:`one_row_form` picks the form: generate's batch is unknown while tracing, so the choice
is a ``tf.cond`` that XLA resolves when it compiles for the real shape; outside XLA (TF Serving
on CPU, ONNX) only the general form is traced, with no ``tf.cond``.

* One row by an input-major kernel: XLA on CPU emits it as a loop fusion that recomputes its
  input (the layer norm before it) for every output column and reads the kernel column by
  column; two copies of the row get the real matrix product (the ``small`` shape's 4 blocks:
  179 -> 84-109 us per decoding step); kernels under 4,096 weights skip this, where the extra
  ops cost more than they save.
* One row by an output-major weight (``benchmarks/head_layout.py``, steps of ``logits = x·Wᵀ``
  and the argmax in one XLA loop; ``benchmarks/results/head_layout.json``): for ``in >= 128``,
  ``tf.matmul(x, tf.transpose(W))`` (KerasHub's tied head) ran 1.9-2.2x faster than the
  transposed dot ``tf.matmul(x, W, transpose_b=True)`` for GPT-2's ``50,257 x 128`` table,
  1.2-1.26x for ``50,257 x 768``, 1.1-1.17x for a ``3,072 x 768`` kernel; for ``in`` of 32 or
  64 it is level or slower (``8,192 x 64``: 0.80-0.84x). With 2 rows or more the two forms are
  level, and outside XLA the transpose would copy ``W`` at every call.
"""

import numpy as np
import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla

from keras_transformers.ops.attention import get_jit_compile

# The width (``in``) of W from which the single-row form pays (benchmarks/head_layout.py).
SINGLE_ROW_FORM_MIN_WIDTH = 128
# The kernel size from which two copies of one row pay (the layer-norm recompute costs more).
TWO_ROW_MIN_KERNEL_SIZE = 4096


def count_rows(x, axes=None):
    """The product of ``x``'s sizes on ``axes`` (default: all but the last), a Python int when
    they are known while tracing, else a scalar tensor."""
    axes = range(x.shape.rank - 1) if axes is None else axes
    sizes = [x.shape[axis] for axis in axes]
    if all(size is not None for size in sizes):
        return int(np.prod(sizes, dtype=np.int64))
    shape = tf.shape(x)
    return tf.reduce_prod(tf.stack([shape[axis] for axis in axes]))


def one_row_form(rows, one_row, general, inputs, enabled=True):
    """``one_row(*inputs)`` where ``rows`` (from :func:`count_rows`) is 1 under XLA and
    ``enabled``, else ``general(*inputs)``; both return the same shapes.

    Rows unknown while tracing are decided by a ``tf.cond`` that XLA resolves when it compiles
    for the concrete shape; it compiles both branches, so each must be valid for any shape.
    Outside XLA (TF Serving on CPU, ONNX) only ``general`` is traced. Gradients are always
    ``general``'s: ``fit`` traces with the batch unknown, so the one-row branch is compiled and
    differentiated too, and XLA cannot differentiate a slice to a traced length (two_rows).
    ``general``'s forward in the gradient is dead code for a product (its gradient needs only
    the inputs), so XLA drops it."""
    inputs = tuple(tf.convert_to_tensor(tensor) for tensor in inputs)
    if not (enabled and get_jit_compile()) or (isinstance(rows, int) and rows != 1):
        return general(*inputs)

    @tf.custom_gradient
    def product(*tensors):
        def general_gradient(upstream):
            floating = [tensor for tensor in tensors if tensor.dtype.is_floating]  # not an int8 kernel
            with tf.GradientTape() as tape:
                tape.watch(floating)
                result = general(*tensors)
            gradients = iter(tape.gradient(result, floating, output_gradients=upstream))
            return [next(gradients) if tensor.dtype.is_floating else None for tensor in tensors]

        if isinstance(rows, int):
            return one_row(*tensors), general_gradient
        result = tf.cond(tf.equal(rows, 1), lambda: one_row(*tensors), lambda: general(*tensors))
        return result, general_gradient

    return product(*inputs)


def two_rows(x, kernel):
    """``x·K`` for ``x`` ``(..., in)`` computed as ``[rows; rows]·K`` and cut to the rows: the
    one-row form of :func:`matmul_rows`, valid for any number of rows."""
    in_features, out_features = kernel.shape
    rows = tf.reshape(x, [-1, in_features])
    product = tf.matmul(tf.concat([rows, rows], axis=0), kernel)[:tf.shape(rows)[0]]
    return tf.reshape(product, tf.concat([tf.shape(x)[:-1], [out_features]], 0))


def matmul_rows(x, kernel, matmul=tf.matmul):
    """``x·K``: ``x`` ``(..., in)``, ``kernel`` ``K`` ``(in, out)`` of the same dtype → ``(..., out)``.

    Under XLA and for ``K`` of at least :data:`TWO_ROW_MIN_KERNEL_SIZE` weights, a single row
    is multiplied as two copies of itself (module docstring); the kernel is still read once.
    Any other number of rows is ``matmul(x, kernel)`` (a layer passes the op it has always
    used, so its numerics stay as they were).

    Example:
        >>> matmul_rows(tf.ones([2, 5, 8]), tf.ones([8, 16])).shape
        TensorShape([2, 5, 16])
    """
    product = one_row_form(count_rows(x), two_rows, matmul, (x, kernel),
                           np.prod(kernel.shape) >= TWO_ROW_MIN_KERNEL_SIZE)
    product.set_shape(x.shape[:-1].concatenate([kernel.shape[1]]))
    return product


def matmul_transposed(x, weights):
    """``x·Wᵀ``: ``x`` ``(..., in)`` float, ``weights`` ``W`` ``(out, in)`` of ``x``'s dtype or
    int8 (converted to it) → ``(..., out)``.

    Under XLA (:func:`~keras_transformers.ops.get_jit_compile` while tracing) and for ``W`` at
    least :data:`SINGLE_ROW_FORM_MIN_WIDTH` wide, a single row of ``x`` is multiplied by
    ``transpose(W)`` (module docstring). An int8 ``W`` is then first tied to ``x`` by an XLA
    optimization barrier: ``W`` is the same at every step of a decoding loop and ``x`` is not,
    and without the tie XLA hoists the conversion out of the loop, which then reads a float32
    copy of ``W`` (4 bytes a weight) at every step instead of the int8 bytes.

    Example:
        >>> matmul_transposed(tf.ones([2, 5, 8]), tf.ones([16, 8])).shape
        TensorShape([2, 5, 16])
    """
    out_features, in_features = weights.shape
    int8 = tf.as_dtype(weights.dtype).is_integer  # a widening conversion: keep it in the loop (below)

    def single_row(x, weights):
        if int8:
            x, weights = xla.optimization_barrier(x, weights)
        product = tf.matmul(tf.reshape(x, [-1, in_features]), tf.transpose(tf.cast(weights, x.dtype)))
        return tf.reshape(product, tf.concat([tf.shape(x)[:-1], [out_features]], 0))

    def transposed_dot(x, weights):
        return tf.matmul(x, tf.cast(weights, x.dtype), transpose_b=True)

    product = one_row_form(count_rows(x), single_row, transposed_dot, (x, weights),
                           in_features >= SINGLE_ROW_FORM_MIN_WIDTH)
    product.set_shape(x.shape[:-1].concatenate([out_features]))
    return product
