"""LoRA fine-tuning (Hu et al., 2021): train low-rank adapters, keep the pretrained weights.

``W' = W + (alpha/rank)·A·B`` on every attention projection (our
:meth:`~keras_transformers.layers.MultiHeadAttention.enable_lora`, on its raw kernels) and on
every feed-forward projection (Keras' own ``Dense.enable_lora``). Everything else in the
backbones is frozen; a task head (classifier, MLM transform) stays trainable.

    model, _ = ...                                     # e.g. EncoderClassifier(imported_encoder, 2)
    enable_lora(model, rank=8)                         # only adapters (+ head) train
    model.fit(...)
    save_lora_weights(model, "adapters.safetensors")   # adapters alone (a few hundred KB)
    load_lora_weights(other_model_with_lora, "adapters.safetensors")
    plain = merge_lora(model)                          # same outputs, no adapters: export this
"""

import contextlib

import numpy as np

from keras_transformers.layers.attention import MultiHeadAttention


def _backbones(model):
    found = [getattr(model, name) for name in ("backbone", "encoder", "decoder") if hasattr(model, name)]
    return found or [model]


def _adaptable_layers(model):
    """(attention layers, feed-forward Dense layers) of the model's backbones."""
    from keras_transformers.layers.feedforward import FeedForward

    attention, dense = [], []
    for backbone in _backbones(model):
        for layer in backbone._flatten_layers(include_self=False):
            if isinstance(layer, MultiHeadAttention):
                attention.append(layer)
            elif isinstance(layer, FeedForward):
                dense.extend(getattr(layer, name) for name in ("gate_proj", "up_proj", "down_proj")
                             if hasattr(layer, name))
    return attention, dense


def enable_lora(model, rank, lora_alpha=None, feedforward=True,
                attention_projections=MultiHeadAttention._PROJECTIONS):
    """Add rank-``rank`` adapters to the attention (and feed-forward) projections of
    ``model``'s backbone(s) and freeze every other backbone weight.

    Args:
        model: a built task model (``EncoderClassifier``, ``CausalLM``, ``Seq2Seq``, ...) or a backbone.
        rank: adapter rank.
        lora_alpha: scale numerator (``alpha/rank``); ``rank`` when None.
        feedforward: also adapt the feed-forward ``Dense`` layers (Keras ``enable_lora``).
        attention_projections: which attention projections to adapt.

    Returns:
        The number of adapter weights added.

    Example:
        >>> model = EncoderClassifier(TransformerConfig.from_preset("tiny"), num_classes=2)
        >>> model.build()
        >>> enable_lora(model, rank=4)   # per block 4·4·(32+32) + 4·(32+64) + 4·(64+32), 2 blocks
        3584
    """
    if not model.built:
        model.build()
    attention, dense = _adaptable_layers(model)
    for backbone in _backbones(model):
        for variable in backbone.weights:
            variable.trainable = False
    for layer in attention:
        layer.enable_lora(rank, lora_alpha, projections=attention_projections)
    if feedforward:
        for layer in dense:
            layer.enable_lora(rank, lora_alpha=lora_alpha)
    return sum(int(np.prod(v.shape)) for v in lora_variables(model).values())


@contextlib.contextmanager
def adapters_disabled(model):
    """Within the block, ``model`` computes as its base: every LoRA update off, the adapters
    themselves untouched (DPO's reference, with no second copy of the weights). The switch is
    Python state, read when a step is traced: a ``tf.function`` traced inside the block
    computes the base, one traced outside it the adapted model.

    Example:
        >>> with adapters_disabled(policy):
        ...     reference_logits = policy(inputs)
    """
    attention, dense = _adaptable_layers(model)
    ranks = [(layer, layer.lora_rank) for layer in attention if layer.lora_rank is not None]
    enabled = [layer for layer in dense if layer.lora_enabled]
    for layer, _ in ranks:
        layer.lora_rank = None  # adapted_kernel() then returns the base kernel
    for layer in enabled:
        layer.lora_enabled = False
    try:
        yield
    finally:
        for layer, rank in ranks:
            layer.lora_rank = rank
        for layer in enabled:
            layer.lora_enabled = True


def lora_variables(model):
    """``{path: variable}`` of every adapter matrix of ``model``, in a stable order."""
    attention, dense = _adaptable_layers(model)
    found = {}
    for layer in attention:
        for a, b in getattr(layer, "lora_kernels", {}).values():
            found[a.path], found[b.path] = a, b
    for layer in dense:
        if layer.lora_enabled:
            found[layer.lora_kernel_a.path] = layer.lora_kernel_a
            found[layer.lora_kernel_b.path] = layer.lora_kernel_b
    return found


def _keys(model):
    """Adapter names that do not depend on the model's (auto-numbered) name: ``i/<name>``."""
    return {f"{i:04d}/{path.split('/')[-1]}": variable
            for i, (path, variable) in enumerate(lora_variables(model).items())}


def save_lora_weights(model, path):
    """Write the adapters alone to ``path`` (safetensors, NumPy API)."""
    from safetensors.numpy import save_file

    tensors = {key: np.asarray(variable.numpy()) for key, variable in _keys(model).items()}
    if not tensors:
        raise ValueError("The model has no LoRA adapters; call enable_lora first.")
    save_file(tensors, str(path))


def load_lora_weights(model, path):
    """Load adapters written by :func:`save_lora_weights` into a model with the same
    architecture on which :func:`enable_lora` was called with the same rank."""
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    variables = _keys(model)
    if set(tensors) != set(variables):
        raise ValueError(f"The adapters in {path} ({len(tensors)} tensors) do not fit this model's "
                         f"({len(variables)}); enable_lora with the same rank and projections first.")
    for key, variable in variables.items():
        if tuple(tensors[key].shape) != tuple(variable.shape):
            raise ValueError(f"Adapter {key!r} has shape {tensors[key].shape}; {variable.path} needs "
                             f"{tuple(variable.shape)}.")
        variable.assign(tensors[key])


def merge_lora(model):
    """A new model of the same class and config, without adapters, whose weights are the
    adapted ones (``W + (alpha/rank)·A·B`` folded in): same outputs, ready for export."""
    attention, dense = _adaptable_layers(model)
    merged = {}
    for layer in attention:
        for name in getattr(layer, "lora_kernels", {}):
            merged[id(getattr(layer, f"{name}_kernel"))] = layer.adapted_kernel(name)
    for layer in dense:
        if layer.lora_enabled:
            merged[id(layer._kernel)] = layer.kernel
    adapters = {id(v) for v in lora_variables(model).values()}
    clone = model.__class__.from_config(model.get_config())
    clone.build()
    sources = [v for v in model.weights if id(v) not in adapters]
    if len(sources) != len(clone.weights):
        raise ValueError(f"merge_lora: {len(sources)} base weights vs {len(clone.weights)} in the clone.")
    for target, source in zip(clone.weights, sources):
        target.assign(merged.get(id(source), source))
    return clone
