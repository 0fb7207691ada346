"""``matmul_transposed``: ``x·Wᵀ`` in the form XLA runs fastest, equal to NumPy on every path."""

import numpy as np
import pytest
import tensorflow as tf

from keras_transformers.ops import jit_compile_scope, matmul_transposed
from keras_transformers.ops.matmul import SINGLE_ROW_FORM_MIN_SIZE

LARGE = (SINGLE_ROW_FORM_MIN_SIZE // 64, 64)  # just large enough for the single-row form
SMALL = (40, 16)


def _weights(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _op_types(function, *specs):
    graph = function.get_concrete_function(*specs).graph
    types = {op.type for op in graph.get_operations()}
    for f in graph.as_graph_def().library.function:  # the branches of a tf.cond
        types |= {node.op for node in f.node_def}
    return types


@pytest.mark.parametrize("shape", [LARGE, SMALL])
@pytest.mark.parametrize("x_shape", [(1, 64), (3, 64), (1, 1, 64), (2, 5, 64)])
def test_matmul_transposed_equals_numpy_under_xla_for_known_and_unknown_rows(shape, x_shape):
    weights = _weights((shape[0], x_shape[-1]))
    x = np.random.default_rng(1).normal(size=x_shape).astype("float32")
    expected = x @ weights.T
    unknown = tf.function(matmul_transposed, jit_compile=True, input_signature=[
        tf.TensorSpec([None] * len(x_shape), tf.float32), tf.TensorSpec(weights.shape, tf.float32)])
    known = tf.function(matmul_transposed, jit_compile=True)
    for function in (unknown, known):
        got = function(tf.constant(x), tf.constant(weights))
        assert got.shape == expected.shape
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_matmul_transposed_without_xla_equals_numpy_and_never_transposes_the_weights():
    weights = _weights(LARGE)
    x = np.random.default_rng(1).normal(size=(1, 64)).astype("float32")
    with jit_compile_scope(False):
        function = tf.function(matmul_transposed)
        np.testing.assert_allclose(function(tf.constant(x), tf.constant(weights)).numpy(), x @ weights.T,
                                   rtol=1e-4, atol=1e-4)
        # A transpose outside XLA would copy the whole table at every call (and TF Serving and
        # ONNX get no tf.cond to carry).
        types = _op_types(function, tf.TensorSpec([None, 64]), tf.TensorSpec(LARGE))
    assert "Transpose" not in types and "StatelessIf" not in types and "If" not in types


def test_matmul_transposed_takes_the_single_row_form_only_for_one_row_of_a_large_table():
    function = tf.function(matmul_transposed)
    with jit_compile_scope(True):
        assert "Transpose" in _op_types(function, tf.TensorSpec([1, 64]), tf.TensorSpec(LARGE))
        assert "Transpose" not in _op_types(function, tf.TensorSpec([4, 64]), tf.TensorSpec(LARGE))
        assert "Transpose" not in _op_types(function, tf.TensorSpec([1, 16]), tf.TensorSpec(SMALL))
        unknown_rows = _op_types(function, tf.TensorSpec([None, 64]), tf.TensorSpec(LARGE))
    assert {"Transpose"} <= unknown_rows and unknown_rows & {"If", "StatelessIf"}
