"""Token embedding and the learned, sinusoidal and rotary position encodings."""

import numpy as np
import pytest
import tensorflow as tf

from keras_transformers.layers import (
    PositionEmbedding,
    RotaryEmbedding,
    SinusoidalPositionEncoding,
    TokenEmbedding,
)
from tests.layers.layer_checks import assert_serialization_round_trip


def paper_sinusoid(positions, hidden_size):
    """Vaswani et al. 3.5: PE(pos, 2i) = sin(pos/10000^(2i/d)), PE(pos, 2i+1) = cos(...)."""
    encoding = np.zeros((*np.shape(positions), hidden_size))
    for i in range(hidden_size // 2):
        angle = np.asarray(positions, np.float64) / 10000.0 ** (2 * i / hidden_size)
        encoding[..., 2 * i] = np.sin(angle)
        encoding[..., 2 * i + 1] = np.cos(angle)
    return encoding


# --- TokenEmbedding ---------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_token_lookup_returns_scaled_table_rows(scale):
    embedding = TokenEmbedding(vocab_size=10, hidden_size=4, scale=scale)
    token_ids = np.array([[1, 9, 0], [3, 3, 5]])
    vectors = embedding(token_ids)
    table = embedding.embeddings.numpy()
    np.testing.assert_allclose(vectors, table[token_ids] * scale, rtol=1e-6)


def test_token_projection_is_hidden_times_table_transposed():
    embedding = TokenEmbedding(vocab_size=10, hidden_size=4)
    embedding.build()
    hidden = np.random.normal(size=(2, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(embedding.project(tf.constant(hidden)),
                               hidden @ embedding.embeddings.numpy().T, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad_id", [10, 11, -1])
def test_token_id_outside_vocabulary_raises_eagerly(bad_id):
    embedding = TokenEmbedding(vocab_size=10, hidden_size=4)
    with pytest.raises(ValueError, match=rf"`token_ids` holds id {bad_id}, .*vocab_size=10"):
        embedding(np.array([[1, bad_id, 2]]))


def test_float_token_ids_raise():
    embedding = TokenEmbedding(vocab_size=10, hidden_size=4)
    with pytest.raises(ValueError, match="`token_ids` must be an integer tensor, got dtype float"):
        embedding(np.array([[1.0, 2.0]], np.float32))


@pytest.mark.parametrize("bad_id", [10, -1])
def test_token_id_outside_vocabulary_fails_inside_a_graph(bad_id):
    embedding = TokenEmbedding(vocab_size=10, hidden_size=4)
    lookup = tf.function(embedding, jit_compile=False)
    lookup(tf.constant([[1, 2]]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside the vocabulary"):
        lookup(tf.constant([[1, bad_id]]))


# --- PositionEmbedding ------------------------------------------------------------------------

def test_position_embedding_returns_the_first_table_rows():
    layer = PositionEmbedding(max_length=6)
    positions = layer(np.zeros((2, 4, 3), np.float32))
    assert positions.shape == (1, 4, 3)
    np.testing.assert_array_equal(positions[0], layer.position_embeddings.numpy()[:4])


def test_position_embedding_gathers_explicit_positions():
    layer = PositionEmbedding(max_length=6)
    positions = np.array([[5, 0, 2], [1, 1, 4]])
    rows = layer(np.zeros((2, 3, 3), np.float32), positions=positions)
    np.testing.assert_array_equal(rows, layer.position_embeddings.numpy()[positions])


def test_position_embedding_rejects_sequences_longer_than_max_length():
    with pytest.raises(ValueError, match="Sequence length 7 exceeds max_length=6"):
        PositionEmbedding(max_length=6)(np.zeros((1, 7, 3), np.float32))


def test_position_embedding_rejects_explicit_positions_past_the_table():
    with pytest.raises(ValueError, match=r"`positions` holds id 6, outside the position table \[0, max_length=6\)"):
        PositionEmbedding(max_length=6)(np.zeros((1, 2, 3), np.float32), positions=np.array([[5, 6]]))


# --- SinusoidalPositionEncoding ---------------------------------------------------------------

def test_sinusoidal_encoding_equals_the_paper_formula():
    encoding = SinusoidalPositionEncoding()(np.zeros((2, 50, 16), np.float32))
    assert encoding.shape == (1, 50, 16)
    np.testing.assert_allclose(encoding[0], paper_sinusoid(np.arange(50), 16), atol=2e-5)


def test_sinusoidal_encoding_with_explicit_positions():
    positions = np.array([[3, 7, 0], [40, 11, 12]])
    encoding = SinusoidalPositionEncoding()(np.zeros((2, 3, 8), np.float32), positions=positions)
    np.testing.assert_allclose(encoding, paper_sinusoid(positions, 8), atol=2e-5)


def test_sinusoidal_encoding_rejects_odd_hidden_size():
    with pytest.raises(ValueError, match="even hidden size, got 5"):
        SinusoidalPositionEncoding()(np.zeros((1, 3, 5), np.float32))


# --- RotaryEmbedding --------------------------------------------------------------------------

def test_rotary_keeps_the_norm_of_every_head_vector():
    x = np.random.normal(size=(2, 3, 7, 8)).astype(np.float32)
    rotated = RotaryEmbedding()(x).numpy()
    np.testing.assert_allclose(np.linalg.norm(rotated, axis=-1), np.linalg.norm(x, axis=-1),
                               rtol=1e-5)
    assert not np.allclose(rotated[:, :, 1:], x[:, :, 1:], atol=1e-3)
    np.testing.assert_allclose(rotated[:, :, 0], x[:, :, 0], rtol=1e-6)  # position 0: no rotation


def _rotated_dot(query, key, m, n):
    rotary = RotaryEmbedding(max_wavelength=100.0)
    q = rotary(query[None, None, None, :], positions=np.array([[m]]))
    k = rotary(key[None, None, None, :], positions=np.array([[n]]))
    return float(tf.reduce_sum(q * k))


def test_rotary_dot_product_depends_only_on_relative_position():
    query, key = np.random.normal(size=(2, 8)).astype(np.float32)
    same_offset = [_rotated_dot(query, key, m, m - 3) for m in (3, 5, 9, 20)]
    np.testing.assert_allclose(same_offset, same_offset[0], rtol=1e-4, atol=1e-5)
    other_offsets = [_rotated_dot(query, key, 3, n) for n in (3, 1, 2)]
    assert not np.isclose(other_offsets[0], same_offset[0], atol=1e-3)
    assert not np.isclose(other_offsets[1], other_offsets[2], atol=1e-3)


def test_rotary_rotates_halves_by_position_times_frequency():
    x = np.random.normal(size=(1, 1, 3, 4)).astype(np.float32)
    rotated = RotaryEmbedding(max_wavelength=100.0)(x).numpy()
    angles = np.arange(3)[:, None] * 100.0 ** (-np.arange(0, 4, 2) / 4)  # (seq, d/2)
    first, second = x[0, 0, :, :2], x[0, 0, :, 2:]
    expected = np.concatenate([first * np.cos(angles) - second * np.sin(angles),
                               second * np.cos(angles) + first * np.sin(angles)], axis=-1)
    np.testing.assert_allclose(rotated[0, 0], expected, rtol=1e-5, atol=1e-6)


def test_rotary_rejects_odd_head_dim():
    with pytest.raises(ValueError, match="even head_dim, got 5"):
        RotaryEmbedding()(np.zeros((1, 2, 3, 5), np.float32))


# --- Serialization ----------------------------------------------------------------------------

@pytest.mark.parametrize("make_layer, inputs", [
    (lambda: TokenEmbedding(vocab_size=10, hidden_size=4, scale=2.0, name="layer"),
     {"token_ids": np.array([[1, 9, 0], [3, 3, 5]], np.int32)}),
    (lambda: PositionEmbedding(max_length=6, name="layer"),
     {"inputs": np.zeros((2, 3, 4), np.float32),
      "positions": np.array([[5, 0, 2], [1, 1, 4]], np.int32)}),
    (lambda: SinusoidalPositionEncoding(max_wavelength=500.0, name="layer"),
     {"inputs": np.zeros((2, 3, 4), np.float32)}),
    (lambda: RotaryEmbedding(max_wavelength=500.0, name="layer"),
     {"x": np.random.default_rng(0).normal(size=(2, 2, 3, 4)).astype(np.float32),
      "positions": np.array([[5, 0, 2], [1, 1, 4]], np.int32)}),
], ids=["token", "position", "sinusoidal", "rotary"])
def test_serialization_round_trip(make_layer, inputs, tmp_path):
    assert_serialization_round_trip(make_layer(), inputs, tmp_path)
