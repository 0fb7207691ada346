"""The chunked (online-softmax) attention equals the exact core, in outputs and gradients.

Every case of :data:`CASES` runs eagerly (the tile loops then run as Python loops: the
same ops, and fast at these sizes) and is compared with the exact core on the same inputs;
the cases of :data:`XLA_CASES` also run XLA-compiled, as the models' compiled steps run them
(compiling every case would take minutes on 2 cores).
"""

import zlib

import numpy as np
import pytest
import tensorflow as tf

from keras_transformers.ops import scaled_dot_product_attention
from keras_transformers.ops.chunked_attention import chunked_attention


def padding(batch, k_len, lengths):
    """``(batch, 1, 1, k_len)`` padding mask with real lengths ``lengths`` (0: a fully padded row)."""
    return (np.arange(k_len)[None, :] < np.array(lengths)[:, None])[:, None, None, :]


_rng = np.random.default_rng(1)
# name -> (batch, heads, kv_heads, q_len, k_len, head_dim, query_block, key_block, attention kwargs)
CASES = {
    "no_mask_blocks_not_dividing": (2, 4, 4, 37, 37, 8, 16, 16, {}),
    "no_mask_blocks_dividing": (1, 2, 2, 32, 32, 8, 8, 16, {}),
    "causal": (2, 4, 4, 37, 37, 8, 16, 16, {"causal": True}),
    "causal_k_longer_than_q": (2, 4, 4, 5, 37, 8, 4, 8, {"causal": True}),
    "causal_q_longer_than_k": (1, 2, 2, 12, 7, 8, 4, 4, {"causal": True}),
    "padding_with_fully_masked_row": (2, 4, 4, 21, 21, 8, 8, 8, {"mask": padding(2, 21, [15, 0])}),
    "padding_and_causal": (2, 4, 4, 21, 21, 8, 16, 8,
                           {"mask": padding(2, 21, [9, 21]), "causal": True}),
    "full_mask_with_empty_rows": (2, 4, 4, 13, 19, 8, 8, 8,
                                  {"mask": _rng.random((2, 4, 13, 19)) > np.linspace(0.2, 1.01, 13)[:, None]}),
    "mask_per_query_no_heads": (2, 4, 4, 13, 13, 8, 8, 4, {"mask": _rng.random((2, 1, 13, 13)) > 0.3}),
    "mask_rank_2": (1, 4, 4, 13, 13, 8, 4, 8, {"mask": _rng.random((13, 13)) > 0.3}),
    "grouped_kv_heads_causal": (2, 6, 2, 29, 29, 8, 16, 8, {"causal": True}),
    "grouped_kv_heads_padding": (2, 4, 1, 17, 17, 8, 8, 8, {"mask": padding(2, 17, [11, 17])}),
    "sliding_window": (1, 4, 2, 40, 40, 8, 8, 8, {"causal": True, "sliding_window": 11}),
    "sliding_window_k_longer": (1, 2, 2, 9, 40, 8, 4, 8, {"causal": True, "sliding_window": 6}),
}


def case_inputs(name, dtype=tf.float32):
    batch, heads, kv_heads, q_len, k_len, head_dim = CASES[name][:6]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    shapes = [(batch, heads, q_len, head_dim), (batch, kv_heads, k_len, head_dim),
              (batch, kv_heads, k_len, head_dim), (batch, heads, q_len, head_dim)]
    return [tf.constant(rng.normal(size=shape), dtype) for shape in shapes]


def outputs_and_gradients(q, k, v, d_out, **kwargs):
    with tf.GradientTape() as tape:
        tape.watch([q, k, v])
        out = scaled_dot_product_attention(q, k, v, **kwargs)
        loss = tf.reduce_sum(tf.cast(out, tf.float32) * tf.cast(d_out, tf.float32))
    return [out] + tape.gradient(loss, [q, k, v])


XLA_CASES = ("padding_and_causal", "grouped_kv_heads_padding", "sliding_window_k_longer")


def exact_and_chunked(names, jit_compile=None):
    """name -> (exact [out, dq, dk, dv], chunked [...]) as NumPy: eagerly, or in one function."""

    def run_all(inputs):
        results = {}
        for name in names:
            *_, query_block, key_block, kwargs = CASES[name]
            q, k, v, d_out = inputs[name]
            results[name] = (
                outputs_and_gradients(q, k, v, d_out, implementation="exact", jit_compile=False, **kwargs),
                outputs_and_gradients(q, k, v, d_out, implementation="chunked",
                                      query_block=query_block, key_block=key_block, **kwargs))
        return results

    if jit_compile is not None:
        run_all = tf.function(run_all, jit_compile=jit_compile)
    results = run_all({name: case_inputs(name) for name in names})
    return {name: tuple([t.numpy() for t in side] for side in pair) for name, pair in results.items()}


@pytest.fixture(scope="module")
def compared():
    return exact_and_chunked(tuple(CASES))


def assert_same(name, exact, chunked):
    for label, a, b in zip(("output", "d_query", "d_key", "d_value"), exact, chunked):
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=1e-5, err_msg=f"{name}: {label}")


@pytest.mark.parametrize("name", CASES)
def test_chunked_equals_exact_in_outputs_and_gradients(compared, name):
    assert_same(name, *compared[name])


@pytest.mark.parametrize("name", XLA_CASES)
def test_chunked_equals_exact_under_xla(name):
    assert_same(name, *exact_and_chunked((name,), jit_compile=True)[name])


def test_fully_masked_rows_give_zero_outputs_and_gradients(compared):
    exact, chunked = compared["padding_with_fully_masked_row"]
    out, d_query = chunked[0], chunked[1]
    assert np.all(out[1] == 0.0) and np.all(d_query[1] == 0.0) and np.all(np.isfinite(out))


def test_dynamic_lengths_without_xla():
    """Unknown lengths at trace time (the export path: no XLA): blocks are padded at run time."""
    q, k, v, d_out = case_inputs("padding_and_causal")
    mask = CASES["padding_and_causal"][-1]["mask"]
    spec = tf.TensorSpec([None, 4, None, 8])
    mask_spec = tf.TensorSpec([None, 1, 1, None], tf.bool)

    @tf.function(input_signature=[spec, spec, spec, spec, mask_spec])
    def both(q, k, v, d_out, mask):
        return (outputs_and_gradients(q, k, v, d_out, mask=mask, causal=True, implementation="exact",
                                      jit_compile=False),
                outputs_and_gradients(q, k, v, d_out, mask=mask, causal=True, implementation="chunked",
                                      query_block=8, key_block=16))

    exact, chunked = both(q, k, v, d_out, tf.constant(mask))
    for a, b in zip(exact, chunked):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-5, rtol=1e-5)


def test_bfloat16_close_to_exact():
    q, k, v, d_out = case_inputs("padding_and_causal", tf.bfloat16)
    mask = CASES["padding_and_causal"][-1]["mask"]
    exact = outputs_and_gradients(q, k, v, d_out, mask=mask, causal=True, implementation="exact")
    chunked = outputs_and_gradients(q, k, v, d_out, mask=mask, causal=True, implementation="chunked",
                                    query_block=16, key_block=8)
    assert chunked[0].dtype == tf.bfloat16 and chunked[1].dtype == tf.bfloat16
    for a, b in zip(exact, chunked):
        a, b = (tf.cast(t, tf.float32).numpy() for t in (a, b))
        assert np.max(np.abs(a - b)) < 0.05 * max(1.0, np.max(np.abs(a)))


def test_dropout_keeps_the_mean_is_seeded_and_backward_uses_the_forward_masks():
    q = tf.zeros([2, 4, 64, 8])  # uniform weights: each output is the mean of the kept values
    k = tf.random.normal([2, 4, 64, 8])
    v = tf.ones([2, 4, 64, 8])  # 512 rows of 64 keys: the mean of 32,768 kept-or-dropped weights
    def attend(q, k, v, seed):
        return chunked_attention(q, k, v, dropout_rate=0.5, seed=seed, query_block=32, key_block=32)

    seed = tf.constant([3, 7])
    out = attend(q, k, v, seed).numpy()
    assert abs(out.mean() - 1.0) < 0.02 and out.std() > 0.05
    np.testing.assert_array_equal(attend(q, k, v, seed).numpy(), out)
    assert not np.array_equal(attend(q, k, v, tf.constant([3, 8])).numpy(), out)
    # The loss is linear in v, so <dL/dv, v> = L exactly when backward redraws forward's masks.
    v = tf.random.normal([1, 2, 24, 8])
    d_out = tf.random.normal([1, 2, 24, 8])
    with tf.GradientTape() as tape:
        tape.watch(v)
        loss = tf.reduce_sum(chunked_attention(tf.random.normal([1, 2, 24, 8]), d_out, v, causal=True,
                                               dropout_rate=0.3, seed=seed, query_block=8,
                                               key_block=8) * d_out)
    np.testing.assert_allclose(tf.reduce_sum(tape.gradient(loss, v) * v).numpy(), loss.numpy(), rtol=1e-4)


def test_auto_picks_exact_for_short_or_unknown_lengths_and_weights():
    from keras_transformers.ops.attention import AUTO_CHUNKED_MIN_LENGTH, _use_chunked
    short, long = tf.zeros([1, 1, 8, 4]), tf.zeros([1, 1, AUTO_CHUNKED_MIN_LENGTH, 4])
    assert not _use_chunked("auto", short, long, False)  # a decoding step: q_len 1..8
    assert _use_chunked("auto", long, long, False)
    assert not _use_chunked("chunked", long, long, True)  # weights are the whole matrix
    assert _use_chunked("chunked", short, short, False)


@pytest.mark.parametrize("kwargs, message", [
    ({"implementation": "flash"}, "`implementation` must be one of"),
    ({"implementation": "chunked", "query_block": 0}, "`query_block` must be a positive integer"),
    ({"implementation": "chunked", "key_block": 2.5}, "`key_block` must be a positive integer"),
])
def test_bad_arguments_raise(kwargs, message):
    q = tf.zeros([1, 2, 4, 8])
    with pytest.raises(ValueError, match=message):
        scaled_dot_product_attention(q, q, q, **kwargs)
