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

        Args:
            token_ids: prompts (for a seq2seq model, decoder prompts, e.g. ``[[start_id]] *
                batch``), a list of id lists of any lengths.
            max_new_tokens: tokens to add; prompt + new tokens must fit ``max_length``.
            stop_token_ids: ids that end a row (kept; the rest of the row is padding).
            encoder_token_ids: a seq2seq model's sources, a list of id lists.

        Returns:
            ``{"token_ids": (batch, longest + max_new_tokens) int32, "padding_mask": bool}``
            as ``CausalLM.generate`` returns them.
        """
        c = self.config
        lengths = np.array([len(row) for row in token_ids], np.int32)
        if lengths.min() < 1:
            raise ValueError("Every prompt in `token_ids` needs at least one token.")
        if lengths.max() + max_new_tokens > c["max_length"]:
            raise ValueError(f"The longest prompt ({lengths.max()}) plus max_new_tokens ({max_new_tokens}) is "
                             f"more than max_length={c['max_length']}.")
        batch, width = len(token_ids), int(lengths.max())
        tokens = np.full((batch, width + max_new_tokens), c["pad_token_id"], np.int32)
        for row, ids in enumerate(token_ids):
            tokens[row, :len(ids)] = ids
        feeds = {}
        if self.encoder is not None:
            feeds = self._encode(encoder_token_ids, batch)
        cache_shape = (batch, c["num_key_value_heads"], width + max_new_tokens, c["head_dim"])
        for i in range(c["num_layers"]):
            feeds[f"past_key_{i}"] = np.zeros(cache_shape, np.float32)
            feeds[f"past_value_{i}"] = np.zeros(cache_shape, np.float32)

        positions = np.broadcast_to(np.arange(width, dtype=np.int32), (batch, width))
        logits = self._run(feeds, tokens[:, :width], positions)
        logits = logits[np.arange(batch), lengths - 1]
        stop = np.asarray(list(stop_token_ids), np.int32)
        done = np.zeros(batch, bool)
        new_lengths = np.zeros(batch, np.int32)
        for i in range(max_new_tokens):
            if i > 0:
                slots = (lengths + i - 1)[:, None]
                logits = self._run(feeds, tokens[np.arange(batch), slots[:, 0]][:, None], slots)[:, 0]
            token = np.where(done, c["pad_token_id"], logits.argmax(-1)).astype(np.int32)
            tokens[np.arange(batch), lengths + i] = token
            new_lengths += ~done
            done |= np.isin(token, stop)
            if done.all():
                break
        total = lengths + new_lengths
        return {"token_ids": tokens, "padding_mask": np.arange(tokens.shape[1])[None, :] < total[:, None]}

    def _encode(self, encoder_token_ids, batch):
        if encoder_token_ids is None or len(encoder_token_ids) != batch:
            raise ValueError(f"A seq2seq model needs `encoder_token_ids`, one source per prompt ({batch}).")
        source_lengths = np.array([len(row) for row in encoder_token_ids])
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
