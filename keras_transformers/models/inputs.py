"""Checks of the input dicts every model takes, with errors in the user's terms."""

import difflib

import tensorflow as tf

from keras_transformers.ops.checks import check_ids_in_range, check_mask_values, with_graph_assertions


def _unknown_key_message(key, allowed):
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"Unexpected input key {key!r}.{hint} Expected keys: {', '.join(allowed)}."


def check_inputs(inputs, model_name, required, optional=(), max_lengths=None, vocab_sizes=None):
    """Validate ``inputs`` and return its tensors by name (``None`` for absent optional keys).

    Raises ``ValueError`` for: a non-dict, missing or misspelled keys, a rank other than
    ``(batch, seq)``, masks whose shape differs from their ids, an empty batch, a sequence
    longer than its entry in ``max_lengths`` (statically; a dynamic length is asserted in-graph),
    non-integer ids or ids outside ``[0, limit)`` for the keys of ``vocab_sizes``, and masks
    that are not booleans or 0/1. The value checks are eager errors, or graph assertions
    outside XLA (under XLA they cannot be built: :meth:`TaskModel.train_step` and its siblings
    run this check before entering the compiled step).
    """
    allowed = list(required) + list(optional)
    if not hasattr(inputs, "keys"):
        raise ValueError(
            f"{model_name} expects a dict of tensors with keys {', '.join(required)}; "
            f"got {type(inputs).__name__}.")
    for key in inputs:
        if key not in allowed:
            raise ValueError(_unknown_key_message(key, allowed))
    missing = [key for key in required if key not in inputs]
    if missing:
        raise ValueError(f"{model_name} is missing input key(s) {', '.join(map(repr, missing))}; "
                         f"expected keys: {', '.join(required)}.")
    tensors = {key: (tf.convert_to_tensor(inputs[key]) if key in inputs else None) for key in allowed}
    for key, tensor in tensors.items():
        if tensor is not None and tensor.shape.rank != 2:
            raise ValueError(f"`{key}` must have shape (batch, seq), got shape {tensor.shape} "
                             f"(rank {tensor.shape.rank}).")
        if tensor is not None and tf.executing_eagerly() and tensor.shape[0] == 0:
            raise ValueError(f"`{key}` is an empty batch (batch size 0).")
    for key, tensor in tensors.items():
        ids_key = key.replace("padding_mask", "token_ids").replace("segment_ids", "token_ids")
        if key != ids_key and tensor is not None:
            ids = tensors[ids_key]
            if ids.shape.is_fully_defined() and tensor.shape.is_fully_defined() and ids.shape != tensor.shape:
                raise ValueError(f"`{key}` must have the shape of `{ids_key}` {ids.shape}, got {tensor.shape}.")
    batch_sizes = {key: tensor.shape[0] for key, tensor in tensors.items()
                   if tensor is not None and tensor.shape[0] is not None}
    if len(set(batch_sizes.values())) > 1:  # e.g. seq2seq source and target batches
        raise ValueError(f"All inputs must have the same batch size, got "
                         f"{', '.join(f'{size} for `{key}`' for key, size in batch_sizes.items())}.")
    for key, limit in (vocab_sizes or {}).items():
        if tensors.get(key) is not None:
            limit_name = "type_vocab_size" if key == "segment_ids" else "vocab_size"
            tensors[key] = check_ids_in_range(tensors[key], limit, key, limit_name)
    for key, limit in (max_lengths or {}).items():
        tensor = tensors[key]
        length = tensor.shape[1]
        if length is not None and length > limit:
            raise ValueError(f"`{key}` has sequence length {length}, longer than max_length={limit}.")
        if length is None and not tf.executing_eagerly():
            tensors[key] = with_graph_assertions(tensor, lambda: [tf.debugging.assert_less_equal(
                tf.shape(tensor)[1], limit, message=f"`{key}` is longer than max_length={limit}.")])
    for key, tensor in tensors.items():
        if key.endswith("padding_mask") and tensor is not None:
            tensors[key] = tf.cast(check_mask_values(tensor, key), tf.bool)
    return tensors
