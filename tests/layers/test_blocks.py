"""EncoderBlock / DecoderBlock: pre- and post-norm wiring, causality, padding, serialization."""

import numpy as np
import pytest

from keras_transformers.layers import DecoderBlock, EncoderBlock, padding_attention_mask
from tests.layers.layer_checks import assert_serialization_round_trip, randomize_weights

HIDDEN = 8


def random_sequence(batch=2, length=5, width=HIDDEN, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, length, width)).astype(np.float32)


PADDING = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int32)
ENCODER_PADDING = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]], np.int32)


def built_encoder_block(**kwargs):
    block = EncoderBlock(num_heads=2, intermediate_size=16, **kwargs)
    block(random_sequence(), padding_mask=PADDING)
    return randomize_weights(block)


def built_decoder_block(encoder_width=6, **kwargs):
    block = DecoderBlock(num_heads=2, intermediate_size=16, **kwargs)
    memory = random_sequence(length=6, width=encoder_width) if block.cross_attention else None
    block(random_sequence(), padding_mask=PADDING, encoder_sequence=memory)
    return randomize_weights(block)


def residual(x, sublayer, norm, norm_first):
    """The block's wiring written out: pre-norm x + f(N(x)), post-norm N(x + f(x))."""
    return x + sublayer(norm(x)) if norm_first else norm(x + sublayer(x))


@pytest.mark.parametrize("norm_type", ["layer_norm", "rms_norm"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_encoder_block_matches_manual_composition(norm_first, norm_type):
    block = built_encoder_block(norm_first=norm_first, norm_type=norm_type)
    x, mask = random_sequence(seed=1), padding_attention_mask(PADDING)
    expected = residual(x, lambda h: block.self_attention(h, attention_mask=mask),
                        block.self_attention_norm, norm_first)
    expected = residual(expected, block.feedforward, block.feedforward_norm, norm_first)
    np.testing.assert_allclose(block(x, padding_mask=PADDING), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_decoder_block_matches_manual_composition(norm_first):
    block = built_decoder_block(norm_first=norm_first, cross_attention=True)
    x, memory = random_sequence(seed=1), random_sequence(length=6, width=6, seed=2)
    mask, memory_mask = padding_attention_mask(PADDING), padding_attention_mask(ENCODER_PADDING)
    expected = residual(x, lambda h: block.self_attention(h, attention_mask=mask, causal=True),
                        block.self_attention_norm, norm_first)
    expected = residual(
        expected,
        lambda h: block.cross_attention_layer(h, key_value=memory, attention_mask=memory_mask),
        block.cross_attention_norm, norm_first)
    expected = residual(expected, block.feedforward, block.feedforward_norm, norm_first)
    outputs = block(x, padding_mask=PADDING, encoder_sequence=memory,
                    encoder_padding_mask=ENCODER_PADDING)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)


def test_pre_norm_and_post_norm_differ():
    x = random_sequence(seed=1)
    post, pre = built_encoder_block(norm_first=False), built_encoder_block(norm_first=True)
    assert not np.allclose(post(x), pre(x), atol=1e-3)


@pytest.mark.parametrize("kwargs", [
    dict(norm_first=False),
    dict(norm_first=True, norm_type="rms_norm", activation="swiglu", rotary_max_wavelength=100.0),
], ids=["post_norm", "pre_norm_rotary"])
def test_decoder_block_is_causal(kwargs):
    block = built_decoder_block(**kwargs)
    x = random_sequence(seed=1)
    changed = x.copy()
    changed[:, 3:] = random_sequence(seed=2)[:, 3:]
    outputs, changed_outputs = block(x).numpy(), block(changed).numpy()
    np.testing.assert_allclose(changed_outputs[:, :3], outputs[:, :3], rtol=1e-6, atol=1e-6)
    assert not np.allclose(changed_outputs[:, 3:], outputs[:, 3:], atol=1e-3)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_encoder_block_real_positions_ignore_padding(norm_first):
    block = built_encoder_block(norm_first=norm_first, rotary_max_wavelength=100.0)
    x = random_sequence(seed=1)
    changed = x.copy()
    changed[0, 3:] = 100.0 * random_sequence(seed=2)[0, 3:]
    outputs, changed_outputs = (block(s, padding_mask=PADDING).numpy() for s in (x, changed))
    np.testing.assert_allclose(changed_outputs[0, :3], outputs[0, :3], rtol=1e-6, atol=1e-6)
    # Padded positions behave as if absent: the real prefix run alone gives the same outputs.
    np.testing.assert_allclose(block(x[:1, :3]).numpy()[0], outputs[0, :3], rtol=1e-5, atol=1e-5)


def test_cross_attention_ignores_padded_encoder_positions():
    block = built_decoder_block(cross_attention=True)
    x, memory = random_sequence(seed=1), random_sequence(length=6, width=6, seed=2)
    changed = memory.copy()
    changed[ENCODER_PADDING == 0] = 50.0
    outputs, changed_outputs = (
        block(x, encoder_sequence=m, encoder_padding_mask=ENCODER_PADDING).numpy()
        for m in (memory, changed))
    np.testing.assert_allclose(changed_outputs, outputs, rtol=1e-6, atol=1e-6)
    assert not np.allclose(block(x, encoder_sequence=changed).numpy(), outputs, atol=1e-3)


def test_cross_attention_width_follows_the_encoder():
    block = built_decoder_block(cross_attention=True, encoder_width=6)
    assert block.cross_attention_layer.key_kernel.shape == (6, 2, HIDDEN // 2)
    assert block.self_attention.key_kernel.shape == (HIDDEN, 2, HIDDEN // 2)


def test_decoder_block_with_cross_attention_needs_encoder_sequence():
    block = DecoderBlock(num_heads=2, intermediate_size=16, cross_attention=True)
    with pytest.raises(ValueError, match="has cross-attention: pass `encoder_sequence`"):
        block(random_sequence())


@pytest.mark.parametrize("make_block, inputs", [
    (lambda: EncoderBlock(num_heads=2, intermediate_size=16, num_key_value_heads=1, head_dim=6,
                          norm_first=True, norm_type="rms_norm", activation="swiglu",
                          rotary_max_wavelength=100.0, use_bias=False, dropout=0.1, name="layer"),
     {"sequence": random_sequence(), "padding_mask": PADDING}),
    (lambda: DecoderBlock(num_heads=2, intermediate_size=16, activation="relu",
                          attention_dropout=0.1, norm_epsilon=1e-3, name="layer"),
     {"sequence": random_sequence(), "padding_mask": PADDING}),
    (lambda: DecoderBlock(num_heads=2, intermediate_size=16, cross_attention=True, name="layer"),
     {"sequence": random_sequence(), "padding_mask": PADDING,
      "encoder_sequence": random_sequence(length=6, width=6),
      "encoder_padding_mask": ENCODER_PADDING}),
], ids=["encoder", "decoder", "decoder_cross_attention"])
def test_serialization_round_trip(make_block, inputs, tmp_path):
    block = make_block()
    block(**inputs)
    randomize_weights(block)
    assert_serialization_round_trip(block, inputs, tmp_path)
