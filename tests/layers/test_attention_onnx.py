"""The cached decoding step of MultiHeadAttention converts to ONNX and runs in ONNX Runtime."""

import numpy as np
import pytest
import tensorflow as tf

from keras_transformers.layers import MultiHeadAttention
from keras_transformers.ops import jit_compile_scope

tf2onnx = pytest.importorskip("tf2onnx")
onnxruntime = pytest.importorskip("onnxruntime")


def test_cached_attention_step_converts_with_scatter_nd_and_matches_tensorflow():
    layer = MultiHeadAttention(num_heads=4, head_dim=8, num_key_value_heads=2, rotary_max_wavelength=10000.0)
    layer(tf.zeros([1, 3, 32]))
    signature = (tf.TensorSpec([None, 1, 32], tf.float32, name="x"),
                 tf.TensorSpec([None, 2, 6, 8], tf.float32, name="keys"),
                 tf.TensorSpec([None, 2, 6, 8], tf.float32, name="values"),
                 tf.TensorSpec([None, 1], tf.int32, name="slot"))

    def step(x, keys, values, slot):
        outputs, (keys, values) = layer(x, causal=True, positions=slot, cache=(keys, values), cache_index=slot)
        return outputs, keys, values

    with jit_compile_scope(False):  # tf2onnx cannot convert functions marked for XLA
        proto, _ = tf2onnx.convert.from_function(tf.function(step), input_signature=signature, opset=17)
    assert "ScatterND" in {node.op_type for node in proto.graph.node}
    session = onnxruntime.InferenceSession(proto.SerializeToString())
    rng = np.random.default_rng(0)
    feeds = {"x": rng.normal(size=(2, 1, 32)).astype(np.float32),
             "keys": rng.normal(size=(2, 2, 6, 8)).astype(np.float32),
             "values": rng.normal(size=(2, 2, 6, 8)).astype(np.float32),
             "slot": np.array([[2], [4]], np.int32)}  # each row writes its own slot
    expected = step(*(tf.constant(value) for value in feeds.values()))
    for got, want in zip(session.run(None, feeds), expected):
        np.testing.assert_allclose(got, want.numpy(), atol=1e-5)
