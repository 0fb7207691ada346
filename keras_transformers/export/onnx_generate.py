"""Greedy generation over the ONNX models of an ``export_onnx`` directory, with ONNX Runtime.

Needs only NumPy and ``onnxruntime`` (no TensorFlow): ``export_onnx`` copies this file into
the directory it writes, so a server can run ``from onnx_generate import OnnxGenerator``
there. The loop is the one ``CausalLM.generate`` / ``Seq2Seq.generate`` compile: one
fixed-size key/value cache per layer, the prompts prefilled at slots ``0..len-1`` (right
padding), then one token per row at its own slot; a stop token ends its row, which is then
padded. It returns the same ids as Keras' greedy ``generate``.

Example:
    >>> generator = OnnxGenerator("lm_onnx")
    >>> out = generator.generate([[2, 72, 105], [2, 79]], max_new_tokens=20, stop_token_ids=[3])
    >>> out["token_ids"].shape, out["padding_mask"].shape
    ((2, 23), (2, 23))
"""

import json
import os

import numpy as np


class OnnxGenerator:
    """The ``decoder_step.onnx`` (and, for a seq2seq model, ``encoder.onnx``) of a directory.

    Args:
        directory: what ``export_onnx`` wrote for a ``CausalLM`` or ``Seq2Seq``.
        providers: ONNX Runtime execution providers (default: CPU).
    """

    def __init__(self, directory, providers=None):
        import onnxruntime

        with open(os.path.join(directory, "generation.json")) as f:
            self.config = json.load(f)
        providers = providers or ["CPUExecutionProvider"]
        self.step = onnxruntime.InferenceSession(os.path.join(directory, "decoder_step.onnx"), providers=providers)
        self.encoder = None
        if self.config["seq2seq"]:
            self.encoder = onnxruntime.InferenceSession(os.path.join(directory, "encoder.onnx"), providers=providers)

    def generate(self, token_ids, max_new_tokens, stop_token_ids=(), encoder_token_ids=None):
        """Greedy continuation of each prompt by up to ``max_new_tokens`` tokens.

        Every input is checked as ``CausalLM.generate`` checks it (an error names the
        argument, the value and the limit): ONNX itself wraps a negative id around the
        vocabulary and cannot name ``max_length``.

        Args:
            token_ids: prompts (for a seq2seq model, decoder prompts, e.g. ``[[start_id]] *
                batch``), a list of id lists of any lengths (or a 2-D integer array).
            max_new_tokens: tokens to add; prompt + new tokens must fit ``max_length``.
            stop_token_ids: an id or ids that end a row (kept; the rest of the row is padding).
            encoder_token_ids: a seq2seq model's sources, a list of id lists.

        Returns:
            ``{"token_ids": (batch, longest + max_new_tokens) int32, "padding_mask": bool}``
            as ``CausalLM.generate`` returns them.

        Raises:
            ValueError: a bad input, or non-finite (NaN/inf) logits: no id outside
                ``[0, vocab_size)`` is ever returned.
            TypeError: an input of the wrong type (a string for ids, ``stop_token_ids=2.5``).
        """
        c = self.config
        if not _is_integer(max_new_tokens) or max_new_tokens < 1:
            raise ValueError(f"`max_new_tokens` must be a positive integer, got {max_new_tokens!r}.")
        max_new_tokens = int(max_new_tokens)
        stop = _stop_ids(stop_token_ids, c["vocab_size"])
        token_ids = _id_rows(token_ids, "token_ids", c["vocab_size"])
        lengths = np.array([len(row) for row in token_ids], np.int32)
        if lengths.max() + max_new_tokens > c["max_length"]:
            raise ValueError(
                f"The longest prompt ({lengths.max()} tokens) plus `max_new_tokens` ({max_new_tokens}) is "
                f"{lengths.max() + max_new_tokens}, more than max_length={c['max_length']}, the model's limit. "
                "Shorten the prompt, ask for fewer tokens, or export a model whose config has a larger "
                "`max_length`.")
        batch, width = len(token_ids), int(lengths.max())
        tokens = np.full((batch, width + max_new_tokens), c["pad_token_id"], np.int32)
        for row, ids in enumerate(token_ids):
            tokens[row, :len(ids)] = ids
        feeds = {}
        if self.encoder is not None:
            feeds = self._encode(encoder_token_ids, batch)
        elif encoder_token_ids is not None:
            raise ValueError("`encoder_token_ids` is for a seq2seq model; this directory holds a causal LM.")
        cache_shape = (batch, c["num_key_value_heads"], width + max_new_tokens, c["head_dim"])
        for i in range(c["num_layers"]):
            feeds[f"past_key_{i}"] = np.zeros(cache_shape, np.float32)
            feeds[f"past_value_{i}"] = np.zeros(cache_shape, np.float32)

        positions = np.broadcast_to(np.arange(width, dtype=np.int32), (batch, width))
        logits = self._run(feeds, tokens[:, :width], positions)
        logits = logits[np.arange(batch), lengths - 1]
        done = np.zeros(batch, bool)
        new_lengths = np.zeros(batch, np.int32)
        for i in range(max_new_tokens):
            if i > 0:
                slots = (lengths + i - 1)[:, None]
                logits = self._run(feeds, tokens[np.arange(batch), slots[:, 0]][:, None], slots)[:, 0]
            bad = ~done & ~np.isfinite(logits).all(axis=-1)
            if bad.any():
                raise ValueError(
                    f"The ONNX model produced non-finite logits (NaN or inf) for prompt row(s) "
                    f"{np.flatnonzero(bad).tolist()} at new token {i}: no token can be chosen from "
                    "them. Its weights hold NaN/inf, or an input failed one of its range checks.")
            token = np.where(done, c["pad_token_id"], logits.argmax(-1)).astype(np.int32)
            tokens[np.arange(batch), lengths + i] = token
            new_lengths += ~done
            done |= np.isin(token, stop)
            if done.all():
                break
        total = lengths + new_lengths
        return {"token_ids": tokens, "padding_mask": np.arange(tokens.shape[1])[None, :] < total[:, None]}

    def _encode(self, encoder_token_ids, batch):
        if encoder_token_ids is None:
            raise ValueError(f"A seq2seq model needs `encoder_token_ids`, one source per prompt ({batch}).")
        encoder_token_ids = _id_rows(encoder_token_ids, "encoder_token_ids", self.config["vocab_size"])
        if len(encoder_token_ids) != batch:
            raise ValueError(f"`encoder_token_ids` has {len(encoder_token_ids)} rows for {batch} prompts "
                             "in `token_ids`: pass one source per prompt.")
        source_lengths = np.array([len(row) for row in encoder_token_ids])
        if source_lengths.max() > self.config["max_length"]:
            raise ValueError(f"The longest source in `encoder_token_ids` has {source_lengths.max()} tokens, "
                             f"more than the model's max_length={self.config['max_length']}.")
        ids = np.full((batch, source_lengths.max()), self.config["pad_token_id"], np.int32)
        for row, source in enumerate(encoder_token_ids):
            ids[row, :len(source)] = source
        mask = (np.arange(ids.shape[1])[None, :] < source_lengths[:, None]).astype(np.int32)
        outputs = self.encoder.run(None, {"encoder_token_ids": ids, "encoder_padding_mask": mask})
        names = [output.name for output in self.encoder.get_outputs()]
        return {"encoder_padding_mask": mask, **dict(zip(names, outputs))}

    def _run(self, feeds, token_ids, positions):
        """Run one step; the cache it returns replaces the one fed. Returns the logits."""
        outputs = self.step.run(None, {**feeds, "token_ids": np.ascontiguousarray(token_ids, np.int32),
                                       "positions": np.ascontiguousarray(positions, np.int32)})
        named = dict(zip((output.name for output in self.step.get_outputs()), outputs))
        for i in range(self.config["num_layers"]):
            feeds[f"past_key_{i}"] = named[f"present_key_{i}"]
            feeds[f"past_value_{i}"] = named[f"present_value_{i}"]
        return named["logits"]


def _is_integer(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _id_rows(rows, name, vocab_size):
    """``rows`` (a list of id lists, or a 2-D integer array) as a list of int64 arrays, each
    checked: at least one id, every id an integer in ``[0, vocab_size)``."""
    if isinstance(rows, (str, bytes)):
        raise TypeError(f"`{name}` must be token ids (a list of id lists), got the string {rows[:40]!r}.")
    if isinstance(rows, np.ndarray):
        if rows.ndim != 2:
            raise ValueError(f"`{name}` must be a list of id lists or have shape (batch, length), "
                             f"got shape {rows.shape}.")
        rows = list(rows)
    if not isinstance(rows, (list, tuple)):
        raise TypeError(f"`{name}` must be a list of id lists, got {type(rows).__name__}.")
    if not rows:
        raise ValueError(f"`{name}` is an empty batch.")
    checked = []
    for row, ids in enumerate(rows):
        if isinstance(ids, (str, bytes)) or not isinstance(ids, (list, tuple, np.ndarray)):
            raise ValueError(f"`{name}` must be a list of id lists; row {row} is {type(ids).__name__} {ids!r}.")
        values = np.asarray(ids)
        if values.ndim != 1 or (values.size and not np.issubdtype(values.dtype, np.integer)):
            raise ValueError(f"`{name}` row {row} must be a flat list of integer ids, got "
                             f"{values.dtype} values of shape {values.shape}.")
        if values.size == 0:
            raise ValueError(f"Every prompt in `{name}` needs at least one token; row {row} is empty.")
        bad = np.flatnonzero((values < 0) | (values >= vocab_size))
        if bad.size:
            raise ValueError(f"`{name}` holds id {values[bad[0]]} (row {row}, position {bad[0]}), "
                             f"outside [0, vocab_size={vocab_size}).")
        checked.append(values.astype(np.int64))
    return checked


def _stop_ids(stop_token_ids, vocab_size):
    if stop_token_ids is None:
        return np.zeros([0], np.int32)
    values = [stop_token_ids] if _is_integer(stop_token_ids) else stop_token_ids
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple, np.ndarray, range, set)):
        raise TypeError("`stop_token_ids` must be a token id or a list of token ids, got "
                        f"{type(stop_token_ids).__name__} {stop_token_ids!r}.")
    values = np.asarray(values).reshape(-1).tolist() if isinstance(values, np.ndarray) else list(values)
    for value in values:
        if not _is_integer(value):
            raise TypeError(f"`stop_token_ids` must hold integer ids, got {type(value).__name__} {value!r}.")
    stop = np.asarray(values, np.int64).reshape(-1)
    if stop.size and (stop.min() < 0 or stop.max() >= vocab_size):
        raise ValueError(f"`stop_token_ids` {stop.tolist()} must lie in [0, vocab_size={vocab_size}).")
    return stop.astype(np.int32)
