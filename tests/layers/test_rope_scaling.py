"""RoPE scaling: each rope_type against a NumPy re-derivation of transformers' formula, the
rotation itself, validation, serialization. (Numbers from transformers itself:
tests/convert/test_llama_family.py.)"""

import math

import numpy as np
import pytest

from keras_transformers import TransformerConfig
from keras_transformers.layers import RotaryEmbedding
from keras_transformers.layers.rope_scaling import check_rope_scaling, inverse_frequencies
from tests.layers.layer_checks import assert_serialization_round_trip

BASE, DIM = 10000.0, 16
OMEGA = np.array([BASE ** (-2 * i / DIM) for i in range(DIM // 2)])  # float64, one by one
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 64}


def llama3_reference(scaling):
    """Meta's reference ``apply_scaling`` (llama-models), one frequency at a time."""
    length, factor = scaling["original_max_position_embeddings"], scaling["factor"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    scaled = []
    for omega in OMEGA:
        wavelength = 2 * math.pi / omega
        if wavelength < length / high:
            scaled.append(omega)
        elif wavelength > length / low:
            scaled.append(omega / factor)
        else:
            smooth = (length / wavelength - low) / (high - low)
            scaled.append((1 - smooth) * omega / factor + smooth * omega)
    return np.array(scaled)


def yarn_reference(factor, length, beta_fast=32, beta_slow=1, truncate=True):
    """YaRN's "NTK-by-parts" (Peng et al., 2023, eq. 17-18 with the ramp of their code)."""
    def dim_of(rotations):  # the feature index whose wave turns `rotations` times over `length`
        return DIM * math.log(length / (rotations * 2 * math.pi)) / (2 * math.log(BASE))

    low, high = dim_of(beta_fast), dim_of(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, DIM - 1)
    scaled = []
    for i, omega in enumerate(OMEGA):
        ramp = min(max((i - low) / (high - low), 0.0), 1.0)  # 0: keep omega, 1: interpolate
        scaled.append(omega * (1 - ramp) + omega / factor * ramp)
    return np.array(scaled)


@pytest.mark.parametrize("scaling, reference", [
    (None, OMEGA),
    ({"rope_type": "linear", "factor": 4.0}, OMEGA / 4.0),
    (LLAMA3, llama3_reference(LLAMA3)),
    ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32},
     yarn_reference(4.0, 32)),
    ({"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 64, "beta_fast": 16.0,
      "beta_slow": 2.0, "truncate": False}, yarn_reference(8.0, 64, 16.0, 2.0, truncate=False)),
], ids=["default", "linear", "llama3", "yarn", "yarn_untruncated"])
def test_static_inverse_frequencies_match_their_formula(scaling, reference):
    actual = inverse_frequencies(BASE, DIM, check_rope_scaling(scaling))
    np.testing.assert_allclose(actual, reference, rtol=2e-6)


def test_llama3_leaves_high_frequencies_divides_low_ones_and_blends_between():
    ratio = inverse_frequencies(BASE, DIM, check_rope_scaling(LLAMA3)) / OMEGA
    wavelength = 2 * math.pi / OMEGA
    assert np.allclose(ratio[wavelength < 64 / 4], 1.0) and np.allclose(ratio[wavelength > 64], 1 / 8)
    medium = (wavelength >= 16) & (wavelength <= 64)
    assert medium.any() and np.all((ratio[medium] > 1 / 8) & (ratio[medium] < 1))


def rotate(x, positions, omega):
    """RoPE in NumPy: pair (x_i, x_{i+d/2}) rotated by pos·ω_i."""
    angles = positions[:, None] * omega[None, :]
    cos, sin = np.cos(angles), np.sin(angles)
    first, second = x[..., : DIM // 2], x[..., DIM // 2:]
    return np.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)


def dynamic_omega(factor, length, seq_len):
    base = BASE * ((factor * max(seq_len, length) / length) - (factor - 1)) ** (DIM / (DIM - 2))
    return np.array([base ** (-2 * i / DIM) for i in range(DIM // 2)])


@pytest.mark.parametrize("seq_len", [6, 20])
def test_dynamic_ntk_base_grows_only_past_the_original_length(seq_len):
    scaling = {"rope_type": "dynamic", "factor": 2.0, "original_max_position_embeddings": 8}
    x = np.random.default_rng(0).normal(size=(1, 2, seq_len, DIM)).astype(np.float32)
    actual = RotaryEmbedding(BASE, scaling=scaling)(x).numpy()
    expected = rotate(x, np.arange(seq_len, dtype=np.float64), dynamic_omega(2.0, 8, seq_len))
    np.testing.assert_allclose(actual, expected, atol=2e-5)
    if seq_len <= 8:  # unchanged: the plain rotation
        np.testing.assert_allclose(actual, RotaryEmbedding(BASE)(x).numpy(), atol=1e-6)


@pytest.mark.parametrize("extra, factor_of_attention", [
    ({}, 0.1 * math.log(4.0) + 1.0),
    ({"mscale": 0.707, "mscale_all_dim": 1.0}, (0.0707 * math.log(4.0) + 1) / (0.1 * math.log(4.0) + 1)),
    ({"attention_factor": 1.25}, 1.25),
])
def test_yarn_scales_queries_and_keys_by_its_attention_factor(extra, factor_of_attention):
    scaling = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32, **extra}
    x = np.random.default_rng(1).normal(size=(2, 2, 5, DIM)).astype(np.float32)
    positions = np.array([[0, 1, 2, 3, 4], [7, 8, 9, 10, 11]])
    actual = RotaryEmbedding(BASE, scaling=scaling)(x, positions).numpy()
    omega = yarn_reference(4.0, 32)
    for row in range(2):
        expected = factor_of_attention * rotate(x[row], positions[row].astype(np.float64), omega)
        np.testing.assert_allclose(actual[row], expected, atol=2e-5)


@pytest.mark.parametrize("scaling, message", [
    ({"factor": 2.0}, "rope_type"),
    ({"rope_type": "longrope", "factor": 2.0}, "'longrope'"),
    ({"rope_type": "linear"}, "needs key(s) ['factor']"),
    ({"rope_type": "linear", "factor": 2.0, "low_freq_factor": 1.0}, "unknown key(s) ['low_freq_factor']"),
    ({"rope_type": "linear", "factor": -1.0}, "rope_scaling['factor']"),
    ({**LLAMA3, "high_freq_factor": 1.0}, "high_freq_factor"),
    ({"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 1.5}, "original_max_position"),
    ({"rope_type": "yarn", "factor": 2.0, "truncate": "no"}, "truncate"),
    ([("rope_type", "linear")], "must be a dict"),
])
def test_bad_rope_scaling_is_refused_naming_the_key_and_value(scaling, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        TransformerConfig.from_preset("tiny", position_encoding="rotary", rope_scaling=scaling)


def test_config_fills_the_original_length_and_round_trips():
    config = TransformerConfig.from_preset("tiny", position_encoding="rotary",
                                           rope_scaling={"rope_type": "dynamic", "factor": 2})
    assert config.rope_scaling == {"rope_type": "dynamic", "factor": 2.0,
                                   "original_max_position_embeddings": config.max_length}
    assert TransformerConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="position_encoding='rotary'"):
        TransformerConfig.from_preset("tiny", rope_scaling={"rope_type": "linear", "factor": 2.0})


def test_scaled_rotary_embedding_serializes(tmp_path):
    layer = RotaryEmbedding(500000.0, scaling=LLAMA3, name="rotary")
    x = np.random.default_rng(2).normal(size=(2, 2, 5, DIM)).astype(np.float32)
    assert_serialization_round_trip(layer, {"x": x}, tmp_path)
