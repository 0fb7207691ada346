"""GELU written with ops every runtime has."""

import math

import tensorflow as tf


def gelu(x, approximate=False):
    """``x·Φ(x)``: exact, ``0.5·x·(1 + erf(x/√2))`` (BERT), or the tanh approximation (GPT-2).

    ``tf.nn.gelu`` writes the exact form with ``erfc``, which ONNX has no operator for
    (tf2onnx leaves an invalid ``Erfc`` node); ``erf`` converts, and the two agree to float32
    rounding (they differ only where the result is below 1e-7 in magnitude).
    """
    if approximate:
        return tf.nn.gelu(x, approximate=True)
    return 0.5 * x * (1.0 + tf.math.erf(x * (1.0 / math.sqrt(2.0))))
