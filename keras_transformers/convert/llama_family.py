"""The Llama family of Hugging Face checkpoints: ``llama`` (2 and 3.x, with RoPE scaling),
``mistral`` (Llama + sliding-window attention), ``qwen2`` (Llama + biases on the query,
key and value projections) and ``mixtral`` (Mistral with a mixture-of-experts feed-forward:
:class:`~keras_transformers.layers.MixtureOfExperts`) → :class:`~keras_transformers.CausalLM`.

All three share the tensor names (``model.layers.{i}.self_attn.q_proj`` ...) and the block:
pre-norm RMSNorm, grouped-query attention with RoPE, SwiGLU feed-forward, a final norm and an
untied (or tied) LM head.

RoPE settings come in two ``config.json`` layouts, both read:

* published Llama 3.x / transformers 4: top-level ``rope_theta`` and ``rope_scaling``
  (``{"rope_type": "llama3", "factor": 8.0, ...}``, or ``null``; older files say ``"type"``);
* transformers 5: ``rope_parameters``, holding ``rope_theta`` and ``rope_type`` (``"default"``
  when unscaled) with the scaling's keys.
"""

import numpy as np

from keras_transformers.convert.reader import (
    CheckpointError,
    Family,
    _assign_attention,
    _assign_dense,
    _assign_norm,
    _check_tied_copy,
    build_causal_lm,
)
from keras_transformers.layers.rope_scaling import ROPE_TYPES
from keras_transformers.models.config import TransformerConfig

LLAMA_FAMILY = ("llama", "mistral", "qwen2", "mixtral")
_DEFAULT_THETA = 10000.0  # transformers' default_theta
_DEFAULT_MAX_POSITIONS = 2048  # LlamaConfig's max_position_embeddings


def _scaling_keys(values):
    """A RoPE dict without its base, ``type`` spelled ``rope_type``: to compare two layouts."""
    values = {key: value for key, value in values.items() if key != "rope_theta"}
    values["rope_type"] = values.pop("rope_type", values.pop("type", "default"))
    return values


def rope_settings(hf):
    """``(rope_theta, rope_scaling)`` of a ``config.json``, from either layout.

    Returns the base as a float and our scaling dict (``None`` when unscaled). Hugging Face's
    defaults are filled in: ``original_max_position_embeddings`` = ``max_position_embeddings``
    for ``llama3`` and ``yarn`` (and always, for ``dynamic``, whose length is
    ``max_position_embeddings``), yarn's ``factor`` = ``max_position_embeddings /
    original_max_position_embeddings`` when null.

    Raises:
        CheckpointError: an unknown ``rope_type`` (naming it), per-layer RoPE parameters,
            ``partial_rotary_factor`` other than 1, both layouts present and disagreeing.
    """
    parameters = hf.get("rope_parameters")
    legacy = hf.get("rope_scaling")
    if parameters is not None and not isinstance(parameters, dict):
        raise CheckpointError(f"{hf.path}: rope_parameters must be a JSON object, got {parameters!r}.")
    if legacy is not None and not isinstance(legacy, dict):
        raise CheckpointError(f"{hf.path}: rope_scaling must be a JSON object or null, got {legacy!r}.")
    if parameters and legacy and _scaling_keys(parameters) != _scaling_keys(legacy):
        raise CheckpointError(f"{hf.path} has both rope_parameters={parameters!r} and "
                              f"rope_scaling={legacy!r}, which disagree.")
    values = dict(parameters or legacy or {})
    if any(isinstance(value, dict) for value in values.values()):
        raise CheckpointError(f"{hf.path}: per-layer RoPE parameters ({sorted(values)}) are not supported.")
    theta = values.pop("rope_theta", None)
    if theta is None:
        theta = hf.get("rope_theta", _DEFAULT_THETA)
    partial = values.pop("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))
    if partial not in (None, 1, 1.0):
        raise CheckpointError(f"{hf.path}: partial_rotary_factor={partial!r} is not supported (only 1.0).")
    legacy_type = values.pop("type", None)
    rope_type = values.pop("rope_type", legacy_type or "default")
    if rope_type == "default":
        return float(theta), None
    if rope_type not in ROPE_TYPES:
        raise CheckpointError(f"{hf.path}: unsupported RoPE type rope_type={rope_type!r}; supported: "
                              f"default, {', '.join(ROPE_TYPES)}.")
    max_positions = hf.get("max_position_embeddings", _DEFAULT_MAX_POSITIONS)
    if rope_type == "dynamic":  # transformers scales from max_position_embeddings, whatever else is set
        values["original_max_position_embeddings"] = max_positions
    elif values.get("original_max_position_embeddings") is None and rope_type in ("llama3", "yarn"):
        values["original_max_position_embeddings"] = max_positions
    if rope_type == "yarn" and values.get("factor") is None:
        values["factor"] = max_positions / values["original_max_position_embeddings"]
    values = {key: value for key, value in values.items() if value is not None}  # null: the default
    return float(theta), {"rope_type": rope_type, **values}


def sliding_window(hf, model_type):
    """The attention window ``W`` of every layer, or ``None``.

    Mistral windows every layer with ``sliding_window`` (``null``: none). Qwen2 windows layers
    ``i >= max_window_layers`` only when ``use_sliding_window`` (or as ``layer_types`` says);
    our blocks share one window, so a model windowing some layers but not others is refused.
    """
    window = hf.get("sliding_window")
    if model_type == "llama":
        return None
    layers = hf["num_hidden_layers"]
    layer_types = hf.get("layer_types")
    if layer_types is None and model_type == "qwen2":
        if not hf.get("use_sliding_window", False):
            window = None
        first = hf.get("max_window_layers", 28)
        layer_types = ["sliding_attention" if window is not None and i >= first else "full_attention"
                       for i in range(layers)]
    if layer_types is None:
        return window
    kinds = set(layer_types)
    if not kinds <= {"full_attention", "sliding_attention"} or len(layer_types) != layers:
        raise CheckpointError(f"{hf.path}: layer_types={layer_types!r} must name each of the {layers} layers "
                              "'full_attention' or 'sliding_attention'.")
    if len(kinds) > 1:
        raise CheckpointError(f"{hf.path}: layer_types mixes sliding-window and full attention "
                              f"({layer_types.count('sliding_attention')} of {layers} layers windowed); "
                              "our blocks share one window, so this is not supported.")
    if kinds == {"sliding_attention"}:
        if window is None:
            raise CheckpointError(f"{hf.path}: layer_types asks for sliding-window attention but "
                                  "sliding_window is null.")
        return window
    return None


def scaled_context(max_position_embeddings, scaling):
    """The longest sequence our model accepts: the context the RoPE scaling reaches.

    transformers sets no limit; we keep one (``max_length``). ``max_position_embeddings`` is
    the trained length for ``linear`` and ``dynamic`` (the scaling stretches it ``factor``
    times), the extended one for ``llama3`` (Llama 3.1: 131072 from 8192), and either for
    ``yarn`` (Qwen2.5 keeps 32768 with factor 4: ``factor · original_max_position_embeddings``
    when larger).
    """
    if scaling is None or scaling["rope_type"] == "llama3":
        return max_position_embeddings
    if scaling["rope_type"] == "yarn":
        return max(max_position_embeddings, int(scaling["original_max_position_embeddings"] * scaling["factor"]))
    return int(max_position_embeddings * scaling["factor"])


def llama_family_config(hf, model_type):
    """Our :class:`TransformerConfig` for a ``llama`` / ``mistral`` / ``qwen2`` ``config.json``."""
    hidden, heads = hf["hidden_size"], hf["num_attention_heads"]
    # Heads may be wider or narrower than hidden_size / heads (Mistral-Nemo, Qwen3's layout).
    head_dim = None if hf.get("head_dim") in (None, hidden // heads) else int(hf["head_dim"])
    if hf.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"Unsupported hidden_act {hf['hidden_act']!r} for {model_type}; only 'silu'.")
    if model_type == "qwen2":  # q/k/v always have biases, the output and MLP never
        use_bias, qkv_bias = False, True
    else:
        use_bias = bool(hf.get("attention_bias", False))
        if use_bias != bool(hf.get("mlp_bias", False)):
            raise CheckpointError("attention_bias and mlp_bias differ; not supported.")
        qkv_bias = None
    theta, scaling = rope_settings(hf)
    max_length = hf.get("max_position_embeddings", _DEFAULT_MAX_POSITIONS)
    return TransformerConfig(
        vocab_size=hf["vocab_size"], hidden_size=hidden, num_layers=hf["num_hidden_layers"], num_heads=heads,
        head_dim=head_dim,
        num_key_value_heads=hf.get("num_key_value_heads") or heads, intermediate_size=hf["intermediate_size"],
        activation="swiglu", norm_type="rms_norm", norm_first=True, norm_epsilon=hf.get("rms_norm_eps", 1e-6),
        position_encoding="rotary", max_length=scaled_context(max_length, scaling),
        rope_max_wavelength=theta, rope_scaling=scaling, sliding_window=sliding_window(hf, model_type),
        embedding_norm=False, dropout=0.0, attention_dropout=float(hf.get("attention_dropout", 0.0)),
        use_bias=use_bias, qkv_bias=qkv_bias, tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        pad_token_id=hf.get("pad_token_id") or 0, initializer_range=hf.get("initializer_range", 0.02),
        **(_experts(hf) if model_type == "mixtral" else {}))


def _experts(hf):
    """Mixtral's mixture: ``num_local_experts`` experts, ``num_experts_per_tok`` per token, the
    router's load-balancing loss weighted by ``router_aux_loss_coef``."""
    if hf.get("router_jitter_noise"):
        raise CheckpointError(f"router_jitter_noise={hf['router_jitter_noise']} is not supported (only 0).")
    return {"num_experts": hf["num_local_experts"], "experts_per_token": hf["num_experts_per_tok"],
            "router_aux_loss_weight": float(hf.get("router_aux_loss_coef", 0.001))}


def _load_experts(t, moe, prefix):
    """Mixtral's experts, in the published per-expert layout (``block_sparse_moe.experts.<e>.w1``
    gate, ``w3`` up, ``w2`` down, and ``block_sparse_moe.gate`` the router; what transformers 5
    saves too) or in transformers 5's fused one (``mlp.experts.gate_up_proj``, ``down_proj``)."""
    if t.has(prefix + "block_sparse_moe.gate.weight"):
        p = prefix + "block_sparse_moe."
        t.assign(moe.router_kernel, p + "gate.weight", lambda w: w.T)
        for variable, name in ((moe.gate_kernel, "w1"), (moe.up_kernel, "w3"), (moe.down_kernel, "w2")):
            stacked = np.stack([t.get(f"{p}experts.{e}.{name}.weight")[0].T for e in range(moe.num_experts)])
            if stacked.shape != tuple(variable.shape):
                raise CheckpointError(f"{p}experts.*.{name}.weight stack to {stacked.shape}; {variable.path} "
                                      f"needs {tuple(variable.shape)}.")
            variable.assign(stacked)
        return
    p = prefix + "mlp."
    t.assign(moe.router_kernel, p + "gate.weight", lambda w: w.T)
    inner = moe.intermediate_size
    t.assign(moe.gate_kernel, p + "experts.gate_up_proj", lambda w: np.transpose(w[:, :inner], (0, 2, 1)))
    t.assign(moe.up_kernel, p + "experts.gate_up_proj", lambda w: np.transpose(w[:, inner:], (0, 2, 1)))
    t.assign(moe.down_kernel, p + "experts.down_proj", lambda w: np.transpose(w, (0, 2, 1)))


def load_llama_family(t, lm):
    """Assign a Llama-family checkpoint's tensors (``model.`` prefix) to a built CausalLM."""
    d = lm.backbone
    t.assign(d.embeddings.token_embedding.embeddings, "embed_tokens.weight")
    for i, block in enumerate(d.blocks):
        p = f"layers.{i}."
        _assign_attention(t, block.self_attention, [p + "self_attn." + n for n in
                                                    ("q_proj", "k_proj", "v_proj", "o_proj")])
        _assign_norm(t, block.self_attention_norm, p + "input_layernorm")
        if block.num_experts:
            _load_experts(t, block.feedforward, p)
        else:
            for name in ("gate_proj", "up_proj", "down_proj"):
                _assign_dense(t, getattr(block.feedforward, name), p + "mlp." + name)
        _assign_norm(t, block.feedforward_norm, p + "post_attention_layernorm")
    _assign_norm(t, d.final_norm, "norm")
    if lm.lm_head.projection is not None:
        t.assign(lm.lm_head.projection.kernel, "lm_head.weight", lambda w: w.T, absolute=True)
    else:
        _check_tied_copy(t, "lm_head.weight", "embed_tokens.weight")


FAMILY = Family(model_types=LLAMA_FAMILY, make_config=llama_family_config, build=build_causal_lm,
                load=lambda t, model, model_type, task: load_llama_family(t, model),
                prefixes=lambda model_type: ("model.",))
