"""RoPE scaling, the Hugging Face way: the inverse frequencies of a rotary embedding stretched
to serve sequences longer than the model was trained on.

A rotary embedding rotates feature pair ``i`` (of ``d/2``, ``d`` the head width) by
``pos · ω_i``, with the default inverse frequencies ``ω_i = base^(-2i/d)``. A *scaling* is a
dict, as Hugging Face's ``rope_scaling`` / ``rope_parameters``, whose ``rope_type`` says how
``ω`` changes (formulas of transformers' ``modeling_rope_utils``, which these match):

* ``linear`` (position interpolation, Chen et al., 2023): ``ω_i / factor``.
* ``dynamic`` (NTK-aware, Hugging Face's dynamic form): for a call whose largest position is
  ``s - 1``, with ``L = original_max_position_embeddings`` and ``s' = max(s, L)``, the base
  becomes ``base · (factor · s'/L - (factor - 1))^(d/(d-2))``; unchanged while ``s <= L``.
  Computed per call, from that call's positions: a decoding step rotates its new key with the
  base of its own length, and keys already in a cache keep theirs, as transformers' cached
  generation does (a full recompute re-rotates every key with the latest base, so cached and
  recomputed logits differ past ``L``, in transformers too).
* ``llama3`` (Llama 3.1): with ``L = original_max_position_embeddings`` and the wavelength
  ``λ_i = 2π/ω_i``: ``ω_i`` if ``λ_i < L/high_freq_factor``; ``ω_i/factor`` if
  ``λ_i > L/low_freq_factor``; else ``(1 - t)·ω_i/factor + t·ω_i`` with
  ``t = (L/λ_i - low_freq_factor) / (high_freq_factor - low_freq_factor)``.
* ``yarn`` (Peng et al., 2023): ``ω_i = ω_i/factor · (1 - e_i) + ω_i · e_i`` where the
  extrapolation weight ``e_i = 1 - clip((i - low)/(high - low), 0, 1)`` and ``low``, ``high`` are
  the feature indices at which a wave turns ``beta_fast`` and ``beta_slow`` times over
  ``L = original_max_position_embeddings``: ``dim(r) = d·ln(L/(2π r)) / (2 ln base)``,
  ``low = max(floor(dim(beta_fast)), 0)``, ``high = min(ceil(dim(beta_slow)), d - 1)``
  (no floor/ceil when ``truncate`` is False). Queries and keys are also multiplied by the
  attention factor ``attention_factor``, by default ``m(factor) = 0.1·ln(factor) + 1`` (1 when
  ``factor <= 1``), or ``m(factor, mscale) / m(factor, mscale_all_dim)`` with
  ``m(s, k) = 0.1·k·ln(s) + 1`` when both are given; the scores thus scale by its square.
  ``beta_fast`` = 32 and ``beta_slow`` = 1 by default.

Example:
    >>> scaling = check_rope_scaling({"rope_type": "linear", "factor": 2.0})
    >>> inverse_frequencies(10000.0, 4, scaling)           # base^(-2i/d) / 2
    array([0.5  , 0.005], dtype=float32)
"""

import math

import numpy as np
import tensorflow as tf

# Keys each rope_type accepts: (required, optional). ``original_max_position_embeddings`` is
# required by the layer; TransformerConfig fills it with its max_length when absent, as
# transformers does with max_position_embeddings.
ROPE_SCALING_KEYS = {
    "linear": ({"factor"}, set()),
    "dynamic": ({"factor", "original_max_position_embeddings"}, set()),
    "llama3": ({"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}, set()),
    "yarn": ({"factor", "original_max_position_embeddings"},
             {"attention_factor", "beta_fast", "beta_slow", "mscale", "mscale_all_dim", "truncate"}),
}
ROPE_TYPES = tuple(ROPE_SCALING_KEYS)


def _number(scaling, key, positive=True):
    value = scaling[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (positive and not value > 0):
        kind = "a positive number" if positive else "a number"
        raise ValueError(f"`rope_scaling[{key!r}]` must be {kind}, got {value!r}.")
    return float(value)


def check_rope_scaling(scaling, max_length=None):
    """Validate a RoPE scaling dict; returns a clean copy (or ``None``).

    Args:
        scaling: ``None``, or a dict with ``rope_type`` in ``linear | dynamic | llama3 | yarn``
            and that type's keys (see the module docstring); unknown or missing keys raise.
        max_length: fills ``original_max_position_embeddings`` when a type needs it and it is
            absent (``None``: it must be given).

    Raises:
        ValueError: naming the key, the value and what was expected.
    """
    if scaling is None:
        return None
    if not isinstance(scaling, dict):
        raise ValueError(f"`rope_scaling` must be a dict or None, got {type(scaling).__name__}: {scaling!r}.")
    scaling = dict(scaling)
    rope_type = scaling.pop("rope_type", None)
    if rope_type not in ROPE_SCALING_KEYS:
        raise ValueError(f"`rope_scaling['rope_type']` must be one of {ROPE_TYPES}, got {rope_type!r}.")
    required, optional = ROPE_SCALING_KEYS[rope_type]
    if "original_max_position_embeddings" in required and max_length is not None:
        scaling.setdefault("original_max_position_embeddings", int(max_length))
    unknown = sorted(set(scaling) - required - optional)
    if unknown:
        raise ValueError(f"`rope_scaling` of rope_type {rope_type!r} has unknown key(s) {unknown}; "
                         f"it takes {sorted(required)} and optionally {sorted(optional)}.")
    missing = sorted(required - set(scaling))
    if missing:
        raise ValueError(f"`rope_scaling` of rope_type {rope_type!r} needs key(s) {missing}.")
    clean = {"rope_type": rope_type}
    for key, value in sorted(scaling.items()):
        if key == "truncate":
            if not isinstance(value, bool):
                raise ValueError(f"`rope_scaling['truncate']` must be True or False, got {value!r}.")
            clean[key] = value
        elif key == "original_max_position_embeddings":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`rope_scaling['original_max_position_embeddings']` must be a positive "
                                 f"integer, got {value!r}.")
            clean[key] = value
        else:
            clean[key] = _number(scaling, key)
    if rope_type == "llama3" and not clean["high_freq_factor"] > clean["low_freq_factor"]:
        raise ValueError(f"`rope_scaling['high_freq_factor']` ({clean['high_freq_factor']}) must exceed "
                         f"`rope_scaling['low_freq_factor']` ({clean['low_freq_factor']}).")
    return clean


def default_inverse_frequencies(base, dim):
    """``ω_i = base^(-2i/d)``, ``i < d/2``: float32 ``(d/2,)`` (computed as transformers does)."""
    two_i = np.arange(0, dim, 2, dtype=np.float32)
    return (1.0 / (np.float32(base) ** (two_i / np.float32(dim)))).astype(np.float32)


def _yarn_mscale(scale, mscale=1.0):
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def attention_factor(scaling):
    """The factor on cos/sin (so on queries and keys): yarn's, else 1."""
    if scaling is None or scaling["rope_type"] != "yarn":
        return 1.0
    if "attention_factor" in scaling:
        return scaling["attention_factor"]
    factor, mscale, mscale_all_dim = (scaling["factor"], scaling.get("mscale"), scaling.get("mscale_all_dim"))
    if mscale and mscale_all_dim:
        return _yarn_mscale(factor, mscale) / _yarn_mscale(factor, mscale_all_dim)
    return _yarn_mscale(factor)


def inverse_frequencies(base, dim, scaling=None):
    """The ``(d/2,)`` float32 inverse frequencies of a static scaling (or of none).

    ``dynamic`` depends on the sequence length: see :func:`dynamic_inverse_frequencies`.
    """
    inverse = default_inverse_frequencies(base, dim)
    if scaling is None:
        return inverse
    rope_type, factor = scaling["rope_type"], scaling["factor"]
    if rope_type == "linear":
        return (inverse / np.float32(factor)).astype(np.float32)
    if rope_type == "llama3":
        length = scaling["original_max_position_embeddings"]
        low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
        wavelength = 2 * math.pi / inverse
        scaled = np.where(wavelength > length / low, inverse / factor, inverse)
        smooth = (length / wavelength - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelength < length / high) & ~(wavelength > length / low)
        return np.where(medium, smoothed, scaled).astype(np.float32)
    if rope_type == "yarn":
        length = scaling["original_max_position_embeddings"]
        beta_fast, beta_slow = scaling.get("beta_fast") or 32, scaling.get("beta_slow") or 1

        def correction_dim(rotations):
            return dim * math.log(length / (rotations * 2 * math.pi)) / (2 * math.log(base))

        low, high = correction_dim(beta_fast), correction_dim(beta_slow)
        if scaling.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, dim - 1)
        if low == high:
            high += 0.001  # as transformers: avoids a division by zero
        ramp = np.clip((np.arange(dim // 2, dtype=np.float32) - low) / (high - low), 0, 1)
        extrapolation = 1 - ramp
        return (inverse / factor * (1 - extrapolation) + inverse * extrapolation).astype(np.float32)
    raise ValueError(f"rope_type {rope_type!r} has no static inverse frequencies.")


def dynamic_inverse_frequencies(base, dim, scaling, sequence_length):
    """Dynamic NTK inverse frequencies for a call of ``sequence_length`` (a scalar tensor:
    the largest position + 1): ``(d/2,)`` float32, see the module docstring."""
    length = float(scaling["original_max_position_embeddings"])
    factor = scaling["factor"]
    seq = tf.maximum(tf.cast(sequence_length, tf.float32), length)
    scaled_base = base * (factor * seq / length - (factor - 1)) ** (dim / (dim - 2))
    two_i = tf.range(0, dim, 2, dtype=tf.float32)
    return 1.0 / scaled_base ** (two_i / dim)
