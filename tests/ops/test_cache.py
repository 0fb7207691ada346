"""The cache write and the cache causal mask, against NumPy."""

import numpy as np
import tensorflow as tf

from keras_transformers.ops import cache_causal_mask, update_cache


def test_update_cache_writes_each_row_at_its_own_slots_and_nothing_else():
    rng = np.random.default_rng(0)
    cache = rng.normal(size=(3, 2, 7, 4)).astype(np.float32)
    updates = rng.normal(size=(3, 2, 2, 4)).astype(np.float32)
    slots = np.array([[0, 1], [3, 4], [5, 6]])
    expected = cache.copy()
    for b in range(3):
        for q in range(2):
            expected[b, :, slots[b, q]] = updates[b, :, q]
    np.testing.assert_array_equal(update_cache(cache, updates, slots).numpy(), expected)


def test_update_cache_keeps_the_cache_dtype():
    cache = tf.zeros([1, 1, 4, 2], tf.bfloat16)
    assert update_cache(cache, tf.ones([1, 1, 1, 2]), [[1]]).dtype == tf.bfloat16


def test_update_cache_is_a_scatter_that_onnx_can_convert():
    # tf2onnx has no conversion for XlaDynamicUpdateSlice (what keras.ops.slice_update becomes);
    # TensorScatterUpdate converts to ONNX ScatterND.
    graph = tf.function(update_cache).get_concrete_function(
        tf.TensorSpec([None, 2, 8, 4]), tf.TensorSpec([None, 2, 1, 4]),
        tf.TensorSpec([None, 1], tf.int32)).graph
    op_types = {op.type for op in graph.get_operations()}
    assert "TensorScatterUpdate" in op_types
    assert not {"XlaDynamicUpdateSlice", "DynamicUpdateSlice"} & op_types


def test_cache_causal_mask_shows_each_query_its_slots_and_earlier():
    slots = np.array([[2], [0]])
    mask = cache_causal_mask(slots, 4).numpy()
    assert mask.shape == (2, 1, 1, 4)
    np.testing.assert_array_equal(mask[:, 0, 0], [[True, True, True, False], [True, False, False, False]])
    prefill = cache_causal_mask(np.array([[0, 1, 2]]), 5).numpy()[0, 0]
    np.testing.assert_array_equal(prefill, np.arange(5)[None, :] <= np.arange(3)[:, None])


def test_cache_causal_mask_with_a_sliding_window_shows_the_last_window_slots():
    slots = np.array([[0, 1, 2], [5, 6, 7], [9, 10, 11]])
    window = 3
    mask = cache_causal_mask(tf.constant(slots), 12, sliding_window=window).numpy()
    assert mask.shape == (3, 1, 3, 12)
    for b in range(3):
        for q in range(3):
            s = slots[b, q]
            expected = [s - window < slot <= s for slot in range(12)]
            np.testing.assert_array_equal(mask[b, 0, q], expected)
