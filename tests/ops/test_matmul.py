"""``matmul_rows`` and ``matmul_transposed``: the product in the form XLA runs fastest, equal to
NumPy on every path, and no XLA-only form outside XLA."""

import numpy as np
import pytest
import tensorflow as tf

from keras_transformers.ops import jit_compile_scope, matmul_rows, matmul_transposed
from keras_transformers.ops.matmul import SINGLE_ROW_FORM_MIN_WIDTH, TWO_ROW_MIN_KERNEL_SIZE

WIDTH = SINGLE_ROW_FORM_MIN_WIDTH
WIDE = (300, WIDTH)  # just wide enough for the single-row form
NARROW = (40, WIDTH // 2)


def _weights(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _op_types(function, *specs):
    graph = function.get_concrete_function(*specs).graph
    types = {op.type for op in graph.get_operations()}
    for f in graph.as_graph_def().library.function:  # the branches of a tf.cond
        types |= {node.op for node in f.node_def}
    return types


@pytest.mark.parametrize("shape", [WIDE, NARROW])
@pytest.mark.parametrize("rows", [(1,), (3,), (1, 1), (2, 5)])
def test_matmul_transposed_equals_numpy_under_xla_for_known_and_unknown_rows(shape, rows):
    weights = _weights(shape)
    x_shape = (*rows, shape[1])
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
    weights = _weights(WIDE)
    x = np.random.default_rng(1).normal(size=(1, WIDTH)).astype("float32")
    with jit_compile_scope(False):
        function = tf.function(matmul_transposed)
        np.testing.assert_allclose(function(tf.constant(x), tf.constant(weights)).numpy(), x @ weights.T,
                                   rtol=1e-4, atol=1e-4)
        # A transpose outside XLA would copy the whole table at every call (and TF Serving and
        # ONNX get no tf.cond to carry).
        types = _op_types(function, tf.TensorSpec([None, WIDTH]), tf.TensorSpec(WIDE))
    assert "Transpose" not in types and "StatelessIf" not in types and "If" not in types


def test_matmul_transposed_takes_the_single_row_form_only_for_one_row_of_a_wide_weight():
    function = tf.function(matmul_transposed)
    with jit_compile_scope(True):
        assert "Transpose" in _op_types(function, tf.TensorSpec([1, WIDTH]), tf.TensorSpec(WIDE))
        assert "Transpose" not in _op_types(function, tf.TensorSpec([4, WIDTH]), tf.TensorSpec(WIDE))
        assert "Transpose" not in _op_types(function, tf.TensorSpec([1, WIDTH // 2]), tf.TensorSpec(NARROW))
        unknown_rows = _op_types(function, tf.TensorSpec([None, WIDTH]), tf.TensorSpec(WIDE))
    assert {"Transpose"} <= unknown_rows and unknown_rows & {"If", "StatelessIf"}


KERNEL = (64, TWO_ROW_MIN_KERNEL_SIZE // 64)  # (in, out): just large enough for two rows


@pytest.mark.parametrize("rows", [(1,), (3,), (1, 1), (2, 5)])
@pytest.mark.parametrize("jit_compile", [True, False])
def test_matmul_rows_equals_numpy_for_known_and_unknown_rows(rows, jit_compile):
    kernel = _weights(KERNEL)
    x = np.random.default_rng(1).normal(size=(*rows, KERNEL[0])).astype("float32")
    expected = x @ kernel
    with jit_compile_scope(jit_compile):
        unknown = tf.function(matmul_rows, jit_compile=jit_compile, input_signature=[
            tf.TensorSpec([None] * len(rows) + [KERNEL[0]], tf.float32), tf.TensorSpec(KERNEL, tf.float32)])
        for function in (unknown, tf.function(matmul_rows, jit_compile=jit_compile)):
            got = function(tf.constant(x), tf.constant(kernel))
            assert got.shape == expected.shape
            np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_matmul_rows_takes_two_rows_only_for_one_row_of_a_large_kernel_under_xla():
    function = tf.function(matmul_rows)
    small = (8, 16)
    with jit_compile_scope(True):
        assert "ConcatV2" in _op_types(function, tf.TensorSpec([1, 64]), tf.TensorSpec(KERNEL))
        assert "ConcatV2" not in _op_types(function, tf.TensorSpec([3, 64]), tf.TensorSpec(KERNEL))
        assert "ConcatV2" not in _op_types(function, tf.TensorSpec([1, 8]), tf.TensorSpec(small))
        assert _op_types(function, tf.TensorSpec([None, 64]), tf.TensorSpec(KERNEL)) & {"If", "StatelessIf"}
    with jit_compile_scope(False):  # a fresh function: traces are cached by input signature
        types = _op_types(tf.function(matmul_rows), tf.TensorSpec([None, 64]), tf.TensorSpec(KERNEL))
    assert not types & {"ConcatV2", "If", "StatelessIf"}


@pytest.mark.parametrize("rows", [(1,), (3,), (2, 5)])
@pytest.mark.parametrize("product, weights_shape, transposed", [
    (matmul_rows, KERNEL, False), (matmul_transposed, WIDE, True)])
def test_gradients_under_xla_with_unknown_rows_equal_numpy(product, weights_shape, transposed, rows):
    # fit traces train_step with the batch unknown: the tf.cond's one-row branch is compiled and
    # differentiated too (a slice to a traced length made XLA refuse the whole train step).
    weights = _weights(weights_shape)
    kernel = weights.T if transposed else weights  # (in, out)
    x = np.random.default_rng(1).normal(size=(*rows, kernel.shape[0])).astype("float32")
    upstream = np.random.default_rng(2).normal(size=(*rows, kernel.shape[1])).astype("float32")

    def gradients(x, weights, upstream):
        with tf.GradientTape() as tape:
            tape.watch([x, weights])
            result = product(x, weights)
        return tape.gradient(result, [x, weights], output_gradients=upstream)

    with jit_compile_scope(True):
        function = tf.function(gradients, jit_compile=True, input_signature=[
            tf.TensorSpec([None] * len(rows) + [kernel.shape[0]]), tf.TensorSpec(weights_shape),
            tf.TensorSpec([None] * len(rows) + [kernel.shape[1]])])
        x_gradient, weights_gradient = function(tf.constant(x), tf.constant(weights), tf.constant(upstream))
    kernel_gradient = x.reshape(-1, kernel.shape[0]).T @ upstream.reshape(-1, kernel.shape[1])
    np.testing.assert_allclose(x_gradient.numpy(), upstream @ kernel.T, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(weights_gradient.numpy(), kernel_gradient.T if transposed else kernel_gradient,
                               rtol=1e-4, atol=1e-3)


def test_an_int8_weight_is_converted_inside_a_decoding_loop_not_hoisted_out_of_it():
    # A decoding loop multiplies one row by the same int8 W at every step. Hoisted out of the
    # loop, the conversion leaves a float32 copy of W that every step reads (4 bytes a weight,
    # as slow as float32): XLA did that until W was tied to the row (an optimization barrier).
    weights = np.random.default_rng(0).integers(-127, 128, size=(WIDTH, WIDTH)).astype("int8")
    x = np.random.default_rng(1).normal(size=(1, WIDTH)).astype("float32")

    def decode(x, weights):
        def step(i, x):
            return i + 1, tf.tanh(matmul_transposed(x, weights) / 1000.0)
        return tf.while_loop(lambda i, x: i < 4, step, (tf.constant(0), x))[1]

    with jit_compile_scope(True):
        function = tf.function(decode, jit_compile=True, input_signature=[
            tf.TensorSpec([None, WIDTH]), tf.TensorSpec(weights.shape, tf.int8)])
        got = function(tf.constant(x), tf.constant(weights)).numpy()
        hlo = function.experimental_get_compiler_ir(tf.constant(x), tf.constant(weights))(stage="optimized_hlo")
    expected = x
    for _ in range(4):
        expected = np.tanh(expected @ weights.astype("float32").T / 1000.0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    loops = [line for line in hlo.splitlines() if " while(" in line]
    assert loops and all(f"s8[{WIDTH},{WIDTH}]" in line for line in loops)
    assert not any(f"f32[{WIDTH},{WIDTH}]" in line for line in loops), "the loop carries a float32 copy of W"


def test_the_gradient_through_an_int8_weight_is_the_inputs_only():
    # Biases of a quantized model stay trainable: the input's gradient flows, the int8 W gets none.
    weights = np.random.default_rng(0).integers(-127, 128, size=WIDE).astype("int8")
    x = np.random.default_rng(1).normal(size=(1, WIDTH)).astype("float32")
    upstream = np.random.default_rng(2).normal(size=(1, WIDE[0])).astype("float32")

    def gradients(x, weights, upstream):
        with tf.GradientTape() as tape:
            tape.watch(x)
            result = matmul_transposed(x, weights)
        return tape.gradient(result, x, output_gradients=upstream)

    with jit_compile_scope(True):
        function = tf.function(gradients, jit_compile=True, input_signature=[
            tf.TensorSpec([None, WIDTH]), tf.TensorSpec(WIDE, tf.int8), tf.TensorSpec([None, WIDE[0]])])
        got = function(tf.constant(x), tf.constant(weights), tf.constant(upstream)).numpy()
    np.testing.assert_allclose(got, upstream @ weights.astype("float32"), rtol=1e-4, atol=1e-3)
