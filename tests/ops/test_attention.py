"""The attention core `scaled_dot_product_attention` against a NumPy softmax(QKᵀ/√d + M)·V."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transformers.ops import (
    causal_mask,
    get_jit_compile,
    jit_compile_scope,
    scaled_dot_product_attention,
)


def reference_attention(query, key, value, mask=None, scale=None):
    """NumPy (float64) softmax(Q·Kᵀ·scale + M)·V; query head h reads KV head h // group."""
    query, key, value = (np.asarray(t, np.float64) for t in (query, key, value))
    group = query.shape[1] // key.shape[1]
    key, value = np.repeat(key, group, axis=1), np.repeat(value, group, axis=1)
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    scores = query @ key.swapaxes(-1, -2) * scale
    visible = np.ones(scores.shape, bool) if mask is None else np.broadcast_to(mask, scores.shape)
    scores = np.where(visible, scores, -np.inf)
    row_max = np.max(scores, axis=-1, keepdims=True)
    exp = np.where(visible, np.exp(scores - np.where(np.isfinite(row_max), row_max, 0.0)), 0.0)
    total = exp.sum(axis=-1, keepdims=True)
    weights = np.divide(exp, total, out=np.zeros_like(exp), where=total > 0)
    return weights @ value, weights


def reference_causal_mask(q_len, k_len):
    """Query i (the (k_len - q_len + i)-th key) sees keys j <= i + k_len - q_len."""
    return np.arange(k_len)[None, :] <= np.arange(q_len)[:, None] + (k_len - q_len)


def random_qkv(batch=2, heads=2, kv_heads=None, q_len=4, k_len=None, head_dim=8):
    rng = np.random.default_rng(0)
    kv_heads, k_len = kv_heads or heads, k_len or q_len
    query = rng.normal(size=(batch, heads, q_len, head_dim)).astype(np.float32)
    key = rng.normal(size=(batch, kv_heads, k_len, head_dim)).astype(np.float32)
    value = rng.normal(size=(batch, kv_heads, k_len, head_dim)).astype(np.float32)
    return query, key, value


def test_no_mask_matches_reference():
    query, key, value = random_qkv()
    expected, _ = reference_attention(query, key, value)
    np.testing.assert_allclose(scaled_dot_product_attention(query, key, value), expected,
                               rtol=1e-5, atol=1e-5)


def test_padding_mask_matches_reference():
    query, key, value = random_qkv(k_len=5)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)[:, None, None, :]
    expected, expected_weights = reference_attention(query, key, value, mask)
    outputs, weights = scaled_dot_product_attention(query, key, value, mask=mask,
                                                    return_weights=True)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)
    assert np.all(weights.numpy()[0, :, :, 3:] == 0.0)
    np.testing.assert_allclose(weights, expected_weights, rtol=1e-5, atol=1e-6)


def test_integer_padding_mask_is_read_as_boolean():
    query, key, value = random_qkv(k_len=5)
    mask = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], np.int32)[:, None, None, :]
    expected, _ = reference_attention(query, key, value, mask.astype(bool))
    np.testing.assert_allclose(scaled_dot_product_attention(query, key, value, mask=mask),
                               expected, rtol=1e-5, atol=1e-5)


def test_causal_matches_reference():
    query, key, value = random_qkv(q_len=5)
    expected, _ = reference_attention(query, key, value, reference_causal_mask(5, 5))
    np.testing.assert_allclose(scaled_dot_product_attention(query, key, value, causal=True),
                               expected, rtol=1e-5, atol=1e-5)


def test_causal_with_more_keys_than_queries_treats_queries_as_the_last_keys():
    query, key, value = random_qkv(q_len=2, k_len=5)
    expected, _ = reference_attention(query, key, value, reference_causal_mask(2, 5))
    np.testing.assert_allclose(scaled_dot_product_attention(query, key, value, causal=True),
                               expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(causal_mask(2, 5), reference_causal_mask(2, 5))


def test_causal_and_padding_mask_combine():
    query, key, value = random_qkv(q_len=4)
    padding = np.array([[1, 1, 1, 0], [0, 1, 1, 1]], bool)[:, None, None, :]
    expected, _ = reference_attention(query, key, value, padding & reference_causal_mask(4, 4))
    np.testing.assert_allclose(
        scaled_dot_product_attention(query, key, value, mask=padding, causal=True),
        expected, rtol=1e-5, atol=1e-5)


def test_grouped_kv_heads_query_head_h_reads_kv_head_h_div_group():
    query, key, value = random_qkv(heads=8, kv_heads=2, q_len=3, k_len=4)
    expected, _ = reference_attention(query, key, value, reference_causal_mask(3, 4))
    outputs = scaled_dot_product_attention(query, key, value, causal=True).numpy()
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)
    # Spelled out for one head: query head 5 of 8 with 2 KV heads reads KV head 5 // 4 = 1.
    single, _ = reference_attention(query[:, 5:6], key[:, 1:2], value[:, 1:2],
                                    reference_causal_mask(3, 4))
    np.testing.assert_allclose(outputs[:, 5:6], single, rtol=1e-5, atol=1e-5)


def test_custom_scale_replaces_inverse_sqrt_head_dim():
    query, key, value = random_qkv()
    expected, _ = reference_attention(query, key, value, scale=0.7)
    np.testing.assert_allclose(scaled_dot_product_attention(query, key, value, scale=0.7),
                               expected, rtol=1e-5, atol=1e-5)


def test_fully_masked_rows_give_exact_zeros_and_no_nan():
    query, key, value = random_qkv(batch=2, k_len=3)
    mask = np.array([[0, 0, 0], [1, 0, 1]], bool)[:, None, None, :]
    outputs, weights = scaled_dot_product_attention(query, key, value, mask=mask,
                                                    return_weights=True)
    outputs, weights = outputs.numpy(), weights.numpy()
    assert not np.isnan(outputs).any() and not np.isnan(weights).any()
    assert np.all(outputs[0] == 0.0) and np.all(weights[0] == 0.0)
    expected, _ = reference_attention(query, key, value, mask)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)


def test_causal_rows_with_no_visible_key_are_zero():
    query, key, value = random_qkv(q_len=4, k_len=2)  # queries 0 and 1 precede every key
    outputs = scaled_dot_product_attention(query, key, value, causal=True).numpy()
    assert np.all(outputs[:, :, :2] == 0.0)
    expected, _ = reference_attention(query, key, value, reference_causal_mask(4, 2))
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)


def test_returned_weights_equal_reference_softmax():
    query, key, value = random_qkv(heads=4, kv_heads=2, q_len=3, k_len=5)
    outputs, weights = scaled_dot_product_attention(query, key, value, return_weights=True)
    expected, expected_weights = reference_attention(query, key, value)
    assert weights.shape == (2, 4, 3, 5)
    np.testing.assert_allclose(weights, expected_weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)


def test_bfloat16_inputs_give_bfloat16_outputs_with_float32_softmax():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    query, key, value = random_qkv(q_len=4, k_len=6)
    query, key, value = (tf.cast(t, tf.bfloat16) for t in (query, key, value))
    mask = np.ones((2, 1, 4, 6), bool)
    mask[0, ..., 4:] = False
    mask[1, :, 0] = False  # sees no key: zeros, not NaN (float32.min is -inf in bf16)
    outputs, weights = scaled_dot_product_attention(query, key, value, mask=mask,
                                                    return_weights=True)
    assert outputs.dtype == tf.bfloat16 and weights.dtype == tf.bfloat16
    assert np.all(outputs.numpy()[1, :, 0] == 0) and np.all(weights.numpy()[1, :, 0] == 0)
    as_float = [tf.cast(t, tf.float32).numpy() for t in (query, key, value)]
    expected, expected_weights = reference_attention(*as_float, mask)
    np.testing.assert_allclose(tf.cast(outputs, tf.float32), expected, rtol=2e-2, atol=3e-2)
    np.testing.assert_allclose(tf.cast(weights, tf.float32), expected_weights, rtol=2e-2, atol=1e-2)
    row_sums = tf.reduce_sum(tf.cast(weights, tf.float32), -1)
    np.testing.assert_allclose(row_sums, np.broadcast_to(mask.any(-1), row_sums.shape), atol=1e-2)


def test_xla_and_non_xla_give_the_same_numbers():
    query, key, value = random_qkv(heads=4, kv_heads=2, q_len=3, k_len=5)
    mask = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], bool)[:, None, None, :]
    compiled, eager = (
        scaled_dot_product_attention(query, key, value, mask=mask, causal=True, jit_compile=jit)
        for jit in (True, False))
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-5)


def _graph_text(enabled):
    """The GraphDef (with its function library) of a tf.function traced under the scope."""
    query, key, value = random_qkv()

    @tf.function
    def attend(q, k, v):
        return scaled_dot_product_attention(q, k, v, causal=True)

    with jit_compile_scope(enabled):
        concrete = attend.get_concrete_function(query, key, value)
    return str(concrete.graph.as_graph_def())


@pytest.mark.parametrize("enabled", [True, False])
def test_jit_compile_scope_decides_the_xla_attribute(enabled):
    assert ("_XlaMustCompile" in _graph_text(enabled)) == enabled


def test_jit_compile_scope_restores_the_previous_setting():
    before = get_jit_compile()
    with jit_compile_scope(not before):
        assert get_jit_compile() == (not before)
    assert get_jit_compile() == before


def test_no_dropout_when_not_training():
    query, key, value = random_qkv()
    expected, _ = reference_attention(query, key, value)
    outputs = scaled_dot_product_attention(query, key, value, dropout_rate=0.5, training=False)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("jit_compile", [True, False])
def test_dropout_with_a_seed_is_reproducible_and_rescales_kept_weights(jit_compile):
    query, key, value = random_qkv(q_len=6)
    seed = tf.constant([3, 7], tf.int32)

    def attend():
        return scaled_dot_product_attention(query, key, value, dropout_rate=0.5, training=True,
                                            seed=seed, return_weights=True, jit_compile=jit_compile)

    (first, first_weights), (second, _) = attend(), attend()
    np.testing.assert_array_equal(first, second)
    expected, expected_weights = reference_attention(query, key, value)
    assert not np.allclose(first, expected, atol=1e-3)
    first_weights = first_weights.numpy()
    dropped = first_weights == 0.0
    assert 0 < dropped.mean() < 1
    # Kept weights are scaled by 1 / (1 - rate) so that each row keeps its mean in expectation.
    np.testing.assert_allclose(first_weights[~dropped], expected_weights[~dropped] / 0.5,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(first, first_weights @ value, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("argument, position", [("query", 0), ("key", 1), ("value", 2)])
def test_wrong_rank_raises_naming_the_argument(argument, position):
    tensors = list(random_qkv())
    tensors[position] = tensors[position][0]
    with pytest.raises(ValueError, match=f"`{argument}` must have rank 4"):
        scaled_dot_product_attention(*tensors)


def test_mismatched_head_dim_raises():
    query, key, value = random_qkv()
    with pytest.raises(ValueError, match=r"`query` and `key` must share head_dim, got 8 and 4"):
        scaled_dot_product_attention(query, key[..., :4], value)


@pytest.mark.parametrize("value_shape", [(2, 1, 4, 8), (2, 2, 3, 8), (2, 2, 4, 6)],
                         ids=["fewer_heads", "shorter", "narrower"])
def test_value_not_shaped_like_key_raises(value_shape):
    query, key, _ = random_qkv()
    value = np.zeros(value_shape, np.float32)
    with pytest.raises(ValueError, match=r"`value` must have the shape of `key`"):
        scaled_dot_product_attention(query, key, value)


def test_heads_not_a_multiple_of_kv_heads_raises():
    query, key, value = random_qkv(heads=6, kv_heads=4)
    message = r"query heads \(6\) must be a multiple of .*key/value heads \(4\)"
    with pytest.raises(ValueError, match=message):
        scaled_dot_product_attention(query, key, value)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_dropout_rate_out_of_range_raises(rate):
    query, key, value = random_qkv()
    with pytest.raises(ValueError, match=rf"`dropout_rate` must be in \[0, 1\), got {rate}"):
        scaled_dot_product_attention(query, key, value, dropout_rate=rate, training=True)


# --- sliding window ---------------------------------------------------------------------------

def brute_force_window_mask(q_len, k_len, window):
    """Query row r sits at absolute position i = r + k_len - q_len; it sees i - W < j <= i."""
    mask = np.zeros((q_len, k_len), bool)
    for row in range(q_len):
        i = row + k_len - q_len
        for j in range(k_len):
            mask[row, j] = j <= i and (window is None or j > i - window)
    return mask


@pytest.mark.parametrize("q_len, k_len, window", [
    (6, 6, 1), (6, 6, 3), (6, 6, 6), (6, 6, 10), (1, 9, 4), (3, 9, 2), (5, 5, None)])
def test_sliding_window_causal_mask_equals_brute_force(q_len, k_len, window):
    actual = causal_mask(q_len, k_len, sliding_window=window).numpy()
    np.testing.assert_array_equal(actual, brute_force_window_mask(q_len, k_len, window))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_sliding_window_attention_equals_attention_with_the_brute_force_mask(jit_compile):
    rng = np.random.default_rng(3)
    query = rng.normal(size=(2, 4, 3, 8)).astype(np.float32)       # the last 3 of 7 positions
    key, value = (rng.normal(size=(2, 2, 7, 8)).astype(np.float32) for _ in range(2))
    padding = np.ones((2, 1, 1, 7), bool)
    padding[1, ..., 5:] = False
    actual = scaled_dot_product_attention(query, key, value, mask=padding, causal=True, sliding_window=3,
                                          jit_compile=jit_compile)
    expected, _ = reference_attention(query, key, value, mask=padding & brute_force_window_mask(3, 7, 3))
    np.testing.assert_allclose(actual.numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("window", [0, -2, 2.5, True, "4"])
def test_bad_sliding_window_is_refused_naming_it(window):
    x = tf.zeros([1, 1, 2, 4])
    with pytest.raises(ValueError, match="`sliding_window` must be a positive integer or None"):
        scaled_dot_product_attention(x, x, x, causal=True, sliding_window=window)


def test_an_additive_bias_is_added_to_the_scaled_scores_before_mask_and_softmax():
    query, key, value = random_qkv(heads=4, kv_heads=2, k_len=5)
    bias = np.random.default_rng(1).normal(size=(1, 4, 4, 5)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)[:, None, None, :]
    group_key, group_value = np.repeat(key, 2, axis=1), np.repeat(value, 2, axis=1)
    scores = query.astype(np.float64) @ group_key.swapaxes(-1, -2) * 0.5 + bias  # scale 0.5
    scores = np.where(mask, scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    expected = (weights / weights.sum(-1, keepdims=True)) @ group_value
    for jit_compile in (True, False):
        outputs = scaled_dot_product_attention(query, key, value, mask=mask, scale=0.5, bias=bias,
                                               jit_compile=jit_compile)
        np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)
    # "auto" takes the exact form with a bias, however long; "chunked" refuses it.
    long_q = tf.zeros([1, 1, 2048, 8])
    assert scaled_dot_product_attention(long_q, long_q, long_q, bias=tf.zeros([1, 1, 1, 2048])).shape == long_q.shape
    with pytest.raises(ValueError, match="implementation='chunked' takes no additive `bias`"):
        scaled_dot_product_attention(query, key, value, bias=bias, implementation="chunked")
    with pytest.raises(ValueError, match="`bias` must have rank <= 4"):
        scaled_dot_product_attention(query, key, value, bias=bias[None])
