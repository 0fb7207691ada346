"""``x·Wᵀ`` for an output-major weight ``W`` ``(out, in)``: the tied head's embedding table, an
int8 kernel (:mod:`keras_transformers.layers.quantization`).

Which form of the product is fastest on XLA/CPU depends on the number of rows. Measured
(benchmarks/head_layout.py: ``H`` steps of ``logits = x·Wᵀ`` then argmax, in one XLA while
loop, as a decoding step runs it): with **one row** (decoding at batch 1) and a table of
``>= 2**19`` entries, ``tf.matmul(x, tf.transpose(W))`` is 1.1-2.5x faster than the transposed
dot ``tf.matmul(x, W, transpose_b=True)`` (GPT-2's ``50,257 x 128`` table: 2.2-2.5x; ``50,257
x 768``: 1.2-1.4x); with 2 rows or more the two are level within 3%; for small tables the
transposed dot is faster (``64 x 32``: 1.3x). So the single-row form is taken only under XLA,
only for large weights, and only where the rows are one; outside XLA (TF Serving on CPU, ONNX)
the transpose would copy ``W`` at every call, so the transposed dot is the only form.
"""

import tensorflow as tf

from keras_transformers.ops.attention import get_jit_compile

# Entries of W from which the single-row form pays (benchmarks/head_layout.py).
SINGLE_ROW_FORM_MIN_SIZE = 2**19


def matmul_transposed(x, weights):
    """``x·Wᵀ``: ``x`` ``(..., in)``, ``weights`` ``W`` ``(out, in)`` of the same dtype →
    ``(..., out)``.

    Under XLA (:func:`~keras_transformers.ops.get_jit_compile` while tracing) and for ``W`` of
    at least :data:`SINGLE_ROW_FORM_MIN_SIZE` entries, a single row of ``x`` is multiplied by
    ``transpose(W)`` (module docstring); a number of rows unknown while tracing is decided by
    a ``tf.cond`` that XLA resolves when it compiles for the concrete shape.

    Example:
        >>> matmul_transposed(tf.ones([2, 5, 8]), tf.ones([16, 8])).shape
        TensorShape([2, 5, 16])
    """
    weights = tf.convert_to_tensor(weights)
    out_features, in_features = weights.shape
    rows = tf.reshape(x, [-1, in_features])

    def transposed_dot():
        return tf.matmul(rows, weights, transpose_b=True)

    def single_row():
        return tf.matmul(rows, tf.transpose(weights))

    if not get_jit_compile() or weights.shape.num_elements() < SINGLE_ROW_FORM_MIN_SIZE:
        product = transposed_dot()
    elif rows.shape[0] is not None:
        product = single_row() if rows.shape[0] == 1 else transposed_dot()
    else:
        product = tf.cond(tf.shape(rows)[0] == 1, single_row, transposed_dot)
    if x.shape.rank == 2:
        return product
    product = tf.reshape(product, tf.concat([tf.shape(x)[:-1], [out_features]], 0))
    product.set_shape(x.shape[:-1].concatenate([out_features]))
    return product
