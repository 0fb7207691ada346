"""MultiHeadAttention against a NumPy reference built from its own projection weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transformers.layers import MultiHeadAttention, RotaryEmbedding
from tests.layers.layer_checks import assert_serialization_round_trip, randomize_weights


def reference_attention(query, key, value, mask=None):
    """NumPy softmax(Q·Kᵀ/√d + M)·V on (batch, heads, seq, dim); head h reads KV head h // group."""
    group = query.shape[1] // key.shape[1]
    key, value = np.repeat(key, group, axis=1), np.repeat(value, group, axis=1)
    scores = query @ key.swapaxes(-1, -2) / np.sqrt(query.shape[-1])
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return weights @ value, weights


def projections(layer, query, key_value=None):
    """Q, K, V as ``(batch, heads, seq, dim)`` from the layer's kernels and biases."""
    source = query if key_value is None else key_value

    def project(x, name):
        kernel = getattr(layer, f"{name}_kernel").numpy()
        bias = getattr(layer, f"{name}_bias").numpy()
        return np.einsum("bsh,hnd->bnsd", x, kernel) + bias[:, None, :]

    return project(query, "query"), project(source, "key"), project(source, "value")


def output_projection(layer, heads):
    return (np.einsum("bnsd,ndh->bsh", heads, layer.output_kernel.numpy())
            + layer.output_bias.numpy())


def built_layer(query, key_value=None, **kwargs):
    layer = MultiHeadAttention(**kwargs)
    layer(query, key_value=key_value)
    return randomize_weights(layer)


def random_inputs(*shape):
    return np.random.normal(size=shape).astype(np.float32)


def test_weight_shapes_follow_heads_and_widths():
    layer = built_layer(random_inputs(2, 5, 12), random_inputs(2, 3, 6),
                        num_heads=4, head_dim=3, num_key_value_heads=2)
    assert layer.query_kernel.shape == (12, 4, 3) and layer.query_bias.shape == (4, 3)
    assert layer.key_kernel.shape == (6, 2, 3) and layer.value_kernel.shape == (6, 2, 3)
    assert layer.output_kernel.shape == (4, 3, 12) and layer.output_bias.shape == (12,)


def test_self_attention_matches_reference():
    x = random_inputs(2, 5, 12)
    layer = built_layer(x, num_heads=3, head_dim=4)
    heads, _ = reference_attention(*projections(layer, x))
    np.testing.assert_allclose(layer(x), output_projection(layer, heads), rtol=1e-4, atol=1e-5)


def test_cross_attention_matches_reference():
    x, memory = random_inputs(2, 3, 12), random_inputs(2, 6, 10)
    layer = built_layer(x, memory, num_heads=3, head_dim=4)
    heads, _ = reference_attention(*projections(layer, x, memory))
    outputs = layer(x, key_value=memory)
    assert outputs.shape == (2, 3, 12)
    np.testing.assert_allclose(outputs, output_projection(layer, heads), rtol=1e-4, atol=1e-5)


def test_causal_self_attention_matches_reference():
    x = random_inputs(2, 5, 12)
    layer = built_layer(x, num_heads=3, head_dim=4)
    heads, _ = reference_attention(*projections(layer, x), mask=np.tri(5, dtype=bool))
    np.testing.assert_allclose(layer(x, causal=True), output_projection(layer, heads),
                               rtol=1e-4, atol=1e-5)


def test_grouped_kv_heads_match_reference():
    x = random_inputs(2, 5, 12)
    layer = built_layer(x, num_heads=8, head_dim=2, num_key_value_heads=2)
    heads, _ = reference_attention(*projections(layer, x), mask=np.tri(5, dtype=bool))
    np.testing.assert_allclose(layer(x, causal=True), output_projection(layer, heads),
                               rtol=1e-4, atol=1e-5)


def test_rotary_matches_manually_rotated_queries_and_keys():
    x = random_inputs(2, 5, 12)
    positions = np.array([[0, 1, 2, 3, 4], [7, 8, 9, 10, 11]])
    layer = built_layer(x, num_heads=2, head_dim=6, num_key_value_heads=1,
                        rotary_max_wavelength=100.0)
    query, key, value = projections(layer, x)
    unrotated, _ = reference_attention(query, key, value, mask=np.tri(5, dtype=bool))
    rotary = RotaryEmbedding(max_wavelength=100.0)
    query = rotary(query.astype(np.float32), positions=positions).numpy()
    key = rotary(key.astype(np.float32), positions=positions).numpy()
    heads, _ = reference_attention(query, key, value, mask=np.tri(5, dtype=bool))
    outputs = layer(x, causal=True, positions=positions)
    np.testing.assert_allclose(outputs, output_projection(layer, heads), rtol=1e-4, atol=1e-5)
    assert not np.allclose(outputs, output_projection(layer, unrotated), atol=1e-3)


def test_rotary_positions_default_to_zero_through_q_len_minus_one():
    x = random_inputs(2, 5, 12)
    layer = built_layer(x, num_heads=2, head_dim=6, rotary_max_wavelength=100.0)
    np.testing.assert_allclose(layer(x, causal=True),
                               layer(x, causal=True, positions=np.tile(np.arange(5), (2, 1))),
                               rtol=1e-6, atol=1e-6)


def test_returned_attention_weights_have_head_shape_and_match_reference():
    x, memory = random_inputs(2, 3, 12), random_inputs(2, 6, 10)
    layer = built_layer(x, memory, num_heads=4, head_dim=3, num_key_value_heads=2)
    outputs, weights = layer(x, key_value=memory, return_attention_weights=True)
    assert outputs.shape == (2, 3, 12) and weights.shape == (2, 4, 3, 6)
    _, expected = reference_attention(*projections(layer, x, memory))
    np.testing.assert_allclose(weights, expected, rtol=1e-4, atol=1e-6)


def test_masked_keys_get_zero_weight():
    x, memory = random_inputs(2, 3, 12), random_inputs(2, 6, 10)
    padding = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]], bool)
    layer = built_layer(x, memory, num_heads=3, head_dim=4)
    outputs, weights = layer(x, key_value=memory, attention_mask=padding[:, None, None, :],
                             return_attention_weights=True)
    weights = weights.numpy()
    assert np.all(weights[0, ..., 4:] == 0.0) and np.all(weights[1, ..., 2:] == 0.0)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    heads, _ = reference_attention(*projections(layer, x, memory), mask=padding[:, None, None, :])
    np.testing.assert_allclose(outputs, output_projection(layer, heads), rtol=1e-4, atol=1e-5)


def test_mixed_bfloat16_returns_bfloat16_close_to_float32():
    x = random_inputs(2, 5, 12)
    reference = built_layer(x, num_heads=4, head_dim=3, num_key_value_heads=2)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    layer = MultiHeadAttention(num_heads=4, head_dim=3, num_key_value_heads=2)
    layer.build(x.shape)
    layer.set_weights(reference.get_weights())
    outputs = layer(x, causal=True)
    assert outputs.dtype == "bfloat16"
    np.testing.assert_allclose(tf.cast(outputs, tf.float32), reference(x, causal=True),
                               rtol=2e-2, atol=2e-2)


def test_heads_not_a_multiple_of_kv_heads_raises():
    message = r"`num_heads` \(6\) must be a multiple of `num_key_value_heads` \(4\)"
    with pytest.raises(ValueError, match=message):
        MultiHeadAttention(num_heads=6, head_dim=2, num_key_value_heads=4)


def test_attention_dropout_only_when_training():
    x = random_inputs(2, 5, 12)
    layer = built_layer(x, num_heads=3, head_dim=4, dropout=0.5)
    heads, _ = reference_attention(*projections(layer, x))
    np.testing.assert_allclose(layer(x, training=False), output_projection(layer, heads),
                               rtol=1e-4, atol=1e-5)
    assert not np.allclose(layer(x, training=True), output_projection(layer, heads), atol=1e-3)


@pytest.mark.parametrize("kwargs, inputs, call_kwargs", [
    (dict(num_heads=4, head_dim=2, num_key_value_heads=2, rotary_max_wavelength=100.0),
     {"query": random_inputs(2, 5, 12), "positions": np.array([[0, 1, 2, 3, 4]] * 2, np.int32)},
     {"causal": True}),
    (dict(num_heads=2, head_dim=3, use_bias=False, dropout=0.1, kernel_initializer="he_normal"),
     {"query": random_inputs(2, 3, 12), "key_value": random_inputs(2, 4, 6),
      "attention_mask": np.array([[1, 1, 0, 0], [1, 1, 1, 1]], bool)[:, None, None, :]},
     {"return_attention_weights": True}),
], ids=["self_rotary_gqa", "cross_masked"])
def test_serialization_round_trip(kwargs, inputs, call_kwargs, tmp_path):
    layer = MultiHeadAttention(**kwargs, name="layer")
    assert_serialization_round_trip(layer, inputs, tmp_path, **call_kwargs)


@pytest.mark.parametrize("kv_heads, rotary, batch, width", [
    (4, None, 2, 32), (2, 10000.0, 2, 32),
    (4, None, 1, 64),  # one row and a 64x4x16 kernel: the two-row matmul path of _project
])
def test_cached_decoding_one_token_at_a_time_equals_full_causal_attention(kv_heads, rotary, batch, width):
    layer = MultiHeadAttention(num_heads=4, head_dim=width // 4, num_key_value_heads=kv_heads,
                               rotary_max_wavelength=rotary)
    x = tf.random.stateless_normal([batch, 6, width], seed=[3, 4])
    expected = layer(x, causal=True).numpy()
    shape = [batch, kv_heads, 9, width // 4]  # longer than the sequence: unwritten slots stay hidden
    cache = (tf.zeros(shape), tf.zeros(shape))
    # A 2-token prefill, then one token per call, each at its own slot (= position).
    slots = tf.tile(tf.constant([[0, 1]]), [batch, 1])
    outputs, cache = layer(x[:, :2], causal=True, positions=slots, cache=cache, cache_index=slots)
    pieces = [outputs]
    for t in range(2, 6):
        slot = tf.fill([batch, 1], t)
        step = tf.function(lambda token, slot, cache: layer(token, causal=True, positions=slot,
                                                            cache=cache, cache_index=slot))
        outputs, cache = step(x[:, t:t + 1], slot, cache)  # static shapes, as in the decode loop
        pieces.append(outputs)
    np.testing.assert_allclose(tf.concat(pieces, axis=1).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(cache[0][:, :, 6:].numpy(), 0.0)


def test_a_precomputed_cache_without_index_is_cross_attention():
    layer = MultiHeadAttention(num_heads=2, head_dim=4)
    query, memory = tf.random.normal([1, 3, 8]), tf.random.normal([1, 5, 8])
    mask = tf.constant([[[[True, True, True, False, False]]]])
    expected = layer(query, key_value=memory, attention_mask=mask)
    outputs, cache = layer(query, attention_mask=mask, cache=layer.key_values(memory))
    np.testing.assert_allclose(outputs.numpy(), expected.numpy(), atol=1e-6)
    assert cache[0].shape == (1, 2, 5, 4)


def test_qkv_bias_puts_biases_on_query_key_value_only():
    attention = MultiHeadAttention(num_heads=4, head_dim=8, num_key_value_heads=2, use_bias=False, qkv_bias=True)
    attention.build((None, None, 32))
    assert [b is not None for b in (attention.query_bias, attention.key_bias, attention.value_bias)] == [True] * 3
    assert attention.output_bias is None
    assert MultiHeadAttention.from_config(attention.get_config()).qkv_bias is True
    default = MultiHeadAttention(num_heads=4, head_dim=8, use_bias=False)
    default.build((None, None, 32))
    assert default.query_bias is None and default.qkv_bias is False
