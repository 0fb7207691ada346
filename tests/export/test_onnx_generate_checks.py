"""``OnnxGenerator`` checks its inputs as ``CausalLM.generate`` does (issue 14, items 3 and 5).

ONNX Runtime wraps a negative id around the vocabulary and cannot name ``max_length``, so the
generator checks before it runs anything. These tests drive the real ``OnnxGenerator`` over a
stand-in for the ONNX Runtime sessions (a step that predicts ``token + 1``), which keeps them
to milliseconds; ``tests/export/test_onnx.py`` runs it over real exports.
"""

import types

import numpy as np
import pytest

from keras_transformers.export.onnx_generate import OnnxGenerator

VOCAB, LAYERS = 16, 1


class FakeStep:
    """``decoder_step.onnx``'s interface: logits that put the next id after each token, or NaN."""

    def __init__(self, nan=False):
        self.nan = nan
        names = ["logits"] + [f"present_{kind}_{i}" for i in range(LAYERS) for kind in ("key", "value")]
        self.outputs = [types.SimpleNamespace(name=name) for name in names]

    def get_outputs(self):
        return self.outputs

    def run(self, _, feeds):
        ids = feeds["token_ids"]
        logits = np.eye(VOCAB, dtype=np.float32)[(ids + 1) % VOCAB]
        if self.nan:
            logits[..., 3] = np.nan
        cache = {name: feeds[name.replace("present", "past")] for name in
                 (o.name for o in self.outputs[1:])}
        return [logits, *cache.values()]


class FakeEncoder:
    def get_outputs(self):
        return [types.SimpleNamespace(name="encoder_sequence")]

    def run(self, _, feeds):
        return [np.zeros((*feeds["encoder_token_ids"].shape, 4), np.float32)]


def generator(seq2seq=False, nan=False):
    g = OnnxGenerator.__new__(OnnxGenerator)
    g.config = {"seq2seq": seq2seq, "num_layers": LAYERS, "num_key_value_heads": 1, "head_dim": 4,
                "vocab_size": VOCAB, "pad_token_id": 0, "max_length": 12}
    g.step, g.encoder = FakeStep(nan), FakeEncoder() if seq2seq else None
    return g


def test_valid_prompts_decode_and_a_bare_stop_id_is_one_stop_id():
    out = generator().generate([[1, 2], [7]], 4, stop_token_ids=9)
    assert out["token_ids"].tolist() == [[1, 2, 3, 4, 5, 6], [7, 8, 9, 0, 0, 0]]
    assert out["padding_mask"].sum(axis=1).tolist() == [6, 3]


@pytest.mark.parametrize("args, kwargs, error, message", [
    # Before: -1 decoded as id 15 (vocab_size - 1), silently.
    (([[1, -1]], 2), {}, ValueError, r"`token_ids` holds id -1 \(row 0, position 1\), outside \[0, vocab_size=16\)"),
    (([[1], [16]], 2), {}, ValueError, r"`token_ids` holds id 16 \(row 1, position 0\), outside \[0, vocab_size=16\)"),
    (([[1] * 10], 3), {}, ValueError, r"\(10 tokens\) plus `max_new_tokens` \(3\) is 13, more than max_length=12"),
    (([], 2), {}, ValueError, "`token_ids` is an empty batch"),
    (([[1], []], 2), {}, ValueError, "needs at least one token; row 1 is empty"),
    (("abc", 2), {}, TypeError, "`token_ids` must be token ids .* got the string 'abc'"),
    (([[1.5]], 2), {}, ValueError, "`token_ids` row 0 must be a flat list of integer ids"),
    (([[1]], 0), {}, ValueError, "`max_new_tokens` must be a positive integer, got 0"),
    (([[1]], 2.5), {}, ValueError, "`max_new_tokens` must be a positive integer, got 2.5"),
    (([[1]], 2), dict(stop_token_ids=[16]), ValueError, r"`stop_token_ids` \[16\] must lie in \[0, vocab_size=16\)"),
    (([[1]], 2), dict(stop_token_ids="3"), TypeError, "`stop_token_ids` must be a token id or a list"),
    (([[1]], 2), dict(stop_token_ids=[2.5]), TypeError, "`stop_token_ids` must hold integer ids, got float 2.5"),
    (([[1]], 2), dict(encoder_token_ids=[[1]]), ValueError, "`encoder_token_ids` is for a seq2seq model"),
])
def test_bad_inputs_name_the_argument_value_and_limit(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        generator().generate(*args, **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(encoder_token_ids=None), "needs `encoder_token_ids`, one source per prompt"),
    (dict(encoder_token_ids=[[1, -2]]), r"`encoder_token_ids` holds id -2 \(row 0, position 1\)"),
    (dict(encoder_token_ids=[[1], [2]]), "`encoder_token_ids` has 2 rows for 1 prompts"),
    (dict(encoder_token_ids=[[1] * 13]), "longest source in `encoder_token_ids` has 13 tokens, more than .*max_length=12"),
])
def test_seq2seq_sources_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generator(seq2seq=True).generate([[1]], 2, **kwargs)


def test_nan_logits_raise_instead_of_returning_a_plausible_id():
    # Before: argmax over NaN logits returned the first NaN's index, a valid-looking id.
    with pytest.raises(ValueError, match=r"non-finite logits \(NaN or inf\) for prompt row\(s\) \[0, 1\] at new token 0"):
        generator(nan=True).generate([[1, 2], [7]], 4)
