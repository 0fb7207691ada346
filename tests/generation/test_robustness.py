"""Issue 14, generation rows: non-finite logits, the bounded cache of compiled loops, bad settings
and the text API's inputs. Every row here failed (or passed silently wrong) before the fix.

The models are module-scoped and a NaN model is the clean one with a weight set to NaN for the
length of one test (compiled loops read the weights at run time, so nothing recompiles). Each XLA
compile costs seconds, so only the tests about the compiled path use XLA (the default); the others
pass ``jit_compile=False`` (the same loop as a TensorFlow graph: one trace, no compile per shape).
"""

import contextlib
import importlib
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transformers import CausalLM
from keras_transformers.export.signatures import generation_settings, serving_functions
from keras_transformers.generation import NonFiniteLogitsError, cache_info, generate_uncached, trace_count
from keras_transformers.ops import jit_compile_scope
from tests.export.models import build
from tests.models.helpers import tiny_config

generate_module = importlib.import_module("keras_transformers.generation.generate")

PROMPTS = [[5, 17, 3, 44, 9], [8], [30, 2, 61]]
GRAPH = dict(jit_compile=False)


@pytest.fixture(scope="module")
def lm():
    keras.utils.set_random_seed(0)
    return CausalLM(tiny_config("llama_like", initializer_range=0.5))  # untied head


@pytest.fixture(scope="module")
def text_lm():
    """A CausalLM with a character CausalLMPreprocessor (vocabulary 128, max_length 48)."""
    return build("causal_lm")


@pytest.fixture(scope="module")
def text_seq2seq():
    return build("seq2seq")


def rows(outputs, key="token_ids", mask_key="padding_mask"):
    return [row[mask].tolist() for row, mask in zip(outputs[key], outputs[mask_key])]


@contextlib.contextmanager
def nan_weight(model, where=lambda variable: "query" in variable.path, index=None):
    """``model`` with one element of its first matching weight set to NaN, restored after."""
    if not model.built:
        model.build(None)
    variable = next(v for v in model.weights if where(v))
    saved = variable.numpy()
    poisoned = saved.copy()
    poisoned[index if index is not None else (0,) * saved.ndim] = np.nan
    variable.assign(poisoned)
    try:
        yield model
    finally:
        variable.assign(saved)


# ------------------------------------------------------------------ non-finite logits (item 3)

@pytest.mark.parametrize("settings", [dict(), dict(temperature=1.0, top_p=0.9, seed=1, **GRAPH),
                                      dict(num_beams=3, **GRAPH)], ids=["greedy", "sampling", "beam"])
def test_nan_weight_raises_instead_of_returning_ids(lm, settings):
    # Before: greedy returned id 64 (= vocab_size), sampling 63s.
    with nan_weight(lm), pytest.raises(NonFiniteLogitsError, match=r"non-finite logits .* row\(s\) \[0, 1, 2\]"):
        lm.generate(PROMPTS, max_new_tokens=4, **settings)
    assert issubclass(NonFiniteLogitsError, ValueError)
    lm.generate(PROMPTS, max_new_tokens=4, **settings)  # restored: generates again


def test_nan_weight_raises_for_seq2seq(text_seq2seq):
    with nan_weight(text_seq2seq), pytest.raises(NonFiniteLogitsError, match="non-finite logits"):
        text_seq2seq.generate(PROMPTS, max_new_tokens=3, start_token_id=2, **GRAPH)


def test_nan_weight_raises_in_generate_text(text_lm):
    # Before: "\x80..." text, decoded from ids outside the vocabulary.
    with nan_weight(text_lm), pytest.raises(NonFiniteLogitsError, match="non-finite logits"):
        text_lm.generate_text(["hello"], max_new_tokens=4, **GRAPH)


def test_compiled_loop_stops_only_the_poisoned_row_and_flags_it(lm):
    """A NaN embedding row poisons every prompt holding that token: that row stops before its
    first new token with ``nonfinite`` set; the other rows decode exactly as without it."""
    clean = lm.generate(PROMPTS, max_new_tokens=5)
    emitted = {token for row in rows(clean)[1:] for token in row}
    poison = next(token for token in PROMPTS[0] if token not in emitted)
    ids, lengths = generate_module.pad_prompts(PROMPTS)
    with nan_weight(lm, lambda v: "token_embedding" in v.path, index=(poison, 0)):
        flagged = generate_module.generate(lm, ids, lengths, 5, max_length=64, on_nonfinite="flag")
    assert flagged["nonfinite"].tolist() == [True, False, False]
    assert rows(flagged)[0] == PROMPTS[0]  # stopped before its first new token
    assert rows(flagged)[1:] == rows(clean)[1:]
    assert ((flagged["token_ids"] >= 0) & (flagged["token_ids"] < 64)).all()


@pytest.fixture(scope="module")
def serve(text_lm):
    """``text_lm``'s ``serving_default`` (8 new tokens), traced as ``export_savedmodel`` traces it."""
    with jit_compile_scope(False):
        function, specs = serving_functions(text_lm, generation_settings(text_lm, max_new_tokens=8))["serving_default"]
        return tf.function(function).get_concrete_function(**specs)


def test_serving_signature_flags_nonfinite_rows_with_ids_in_the_vocabulary(text_lm, serve):
    texts = tf.constant(["hi", "a longer prompt"])
    clean = serve(text=texts)
    assert clean["nonfinite"].numpy().tolist() == [False, False]
    with nan_weight(text_lm):
        poisoned = serve(text=texts)
    assert poisoned["nonfinite"].numpy().tolist() == [True, True]
    assert poisoned["generated_lengths"].numpy().tolist() == [0, 0]
    ids = poisoned["generated_ids"].numpy()
    assert ((ids >= 0) & (ids < 128)).all() and poisoned["generated_text"].numpy().tolist() == [b"", b""]


# ------------------------------------------------------------ bounded compiled loops (item 2)

def assert_greedy(lm, outputs, prompts):
    """Each new token is the argmax of the model's logits after the tokens before it: checked
    by one forward pass over the outputs (causal: a position sees only what precedes it), which
    holds only for the greedy continuation."""
    logits = lm({"token_ids": outputs["token_ids"], "padding_mask": outputs["padding_mask"]}).numpy()
    for row, prompt in enumerate(prompts):
        end = int(outputs["padding_mask"][row].sum())
        np.testing.assert_array_equal(outputs["token_ids"][row, len(prompt):end],
                                      logits[row, len(prompt) - 1:end - 1].argmax(-1))


def test_bucketed_widths_give_the_unbucketed_greedy_tokens(lm):
    """Compiled: 3 prompts decode in a batch of 4, in a buffer of 16 (5 + 4 tokens) or 32
    (5 + 12): the extra row and columns change nothing."""
    long = lm.generate(PROMPTS, max_new_tokens=12)
    short = lm.generate(PROMPTS, max_new_tokens=4)
    assert long["token_ids"].shape == (3, 17) and short["token_ids"].shape == (3, 9)
    assert long["padding_mask"].sum() == sum(map(len, PROMPTS)) + 3 * 12
    assert_greedy(lm, long, PROMPTS)
    assert rows(short) == [row[:len(prompt) + 4] for row, prompt in zip(rows(long), PROMPTS)]


def test_bucketed_batches_give_the_unbucketed_samples(lm):
    """A sample does not depend on how many rows share the batch (4 or 8 after bucketing) nor on
    how many steps were asked for (a buffer of 16 or 32)."""
    settings = dict(temperature=1.0, top_p=0.9, seed=3, **GRAPH)
    few = lm.generate(PROMPTS, max_new_tokens=3, **settings)
    many = lm.generate(PROMPTS + [[1, 2], [60]], max_new_tokens=12, **settings)
    assert many["token_ids"].shape == (5, 17)
    assert [row[:len(p) + 3] for row, p in zip(rows(many), PROMPTS)] == rows(few)
    assert len(set(map(tuple, rows(many)))) == 5


def test_one_trace_per_setting_and_one_program_per_bucket(lm, monkeypatch):
    monkeypatch.setattr(generate_module, "CACHE_SIZE", 1)
    model = CausalLM(tiny_config("gpt2_like", num_layers=1))  # a model of its own: counts from zero
    rng = np.random.default_rng(0)

    def call(**settings):
        batch, length, new = rng.integers(1, 5), rng.integers(1, 8), rng.integers(1, 9)
        prompts = rng.integers(1, 64, (batch, length)).tolist()
        stop = [None, 3, [3], [3, 4]][rng.integers(4)]  # stop-list buckets: 1 (none or one id), 2
        return model.generate(prompts, max_new_tokens=int(new), stop_token_ids=stop, **GRAPH, **settings)

    for batch in (1, 2, 4):  # every bucket the random calls reach: batch 1/2/4 x width 16 x stop 1/2
        for stop in (None, [3, 4]):
            model.generate([[1]] * batch, max_new_tokens=2, stop_token_ids=stop, **GRAPH)
    info = cache_info(model)
    assert info["traces"] == 1 and info["functions"] == 1 and info["programs"] == 6
    for _ in range(16):  # batch 1-4, prompts of 1-7 tokens, 1-8 new ones: nothing new
        call()
    assert cache_info(model) == info
    call(temperature=1.0)  # a second setting, with room for one: greedy is evicted
    info = cache_info(model)
    assert info["functions"] == info["maxsize"] == 1 and info["traces"] == trace_count(model) == 2


@pytest.mark.slow
def test_200_random_calls_after_warmup_grow_rss_by_under_100_mb():
    """In a fresh process (tests/generation/rss_probe.py): after one call per bucket, 200 calls of
    random batch (1-32), prompt length (1-63) and max_new_tokens (1-63) compile nothing more."""
    probe = os.path.join(os.path.dirname(__file__), "rss_probe.py")
    result = subprocess.run([sys.executable, probe, "200"], capture_output=True, text=True, timeout=1800,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(probe))))
    assert result.returncode == 0, result.stderr[-3000:]
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    assert numbers["end"]["programs"] == numbers["warmup"]["programs"] <= 24
    assert numbers["end"]["traces"] == numbers["warmup"]["traces"] == 1
    assert numbers["rss_end_mb"] - numbers["rss_after_warmup_mb"] < 100, numbers


# ----------------------------------------------------------------- settings (items 3 and 6)

@pytest.mark.parametrize("kwargs, error, message", [
    (dict(temperature=float("nan")), ValueError, "`temperature` must be finite, got nan"),
    (dict(temperature=float("inf")), ValueError, "`temperature` must be finite, got inf"),
    (dict(temperature="1"), TypeError, "`temperature` must be a number, got str '1'"),
    (dict(temperature=1.0, top_p=float("nan")), ValueError, "`top_p` must be finite, got nan"),
    (dict(num_beams=2, length_penalty=float("nan")), ValueError, "`length_penalty` must be finite, got nan"),
    (dict(num_beams=2, length_penalty=float("-inf")), ValueError, "`length_penalty` must be finite, got -inf"),
    (dict(temperature=1.0, top_k=2.5), TypeError, r"`top_k` must be an integer in \[1, vocab_size=64\], got float 2.5"),
    (dict(temperature=1.0, top_k=True), TypeError, "`top_k` must be an integer"),
    (dict(stop_token_ids="5"), TypeError, "`stop_token_ids` must be a token id or a list of token ids, got str"),
    (dict(stop_token_ids=[5.0]), TypeError, "`stop_token_ids` must hold integer ids, got float 5.0"),
    (dict(stop_token_ids=64), ValueError, r"`stop_token_ids` \[64\] must lie in \[0, vocab_size=64\)"),
    (dict(max_new_tokens=2.0), ValueError, "`max_new_tokens` must be a positive integer, got 2.0"),
    (dict(token_ids=[]), ValueError, "`token_ids` is an empty batch"),
    (dict(token_ids="abc"), TypeError, "`token_ids` must be token ids .* got the string 'abc'"),
    (dict(token_ids=np.ones((1, 2), int), padding_mask=[[1, 0.5]]), ValueError,
     "`padding_mask` must hold booleans or 0/1, got 0.5"),
])
def test_bad_settings_name_the_argument_value_and_limit(lm, kwargs, error, message):
    arguments = dict(token_ids=[[1, 2]], max_new_tokens=2)
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        lm.generate(**arguments)


def test_a_bare_stop_token_id_is_one_stop_token(lm):
    # Before: TypeError "'int' object is not iterable" from inside the argument handling.
    np.testing.assert_array_equal(lm.generate(PROMPTS, max_new_tokens=6, stop_token_ids=9)["token_ids"],
                                  lm.generate(PROMPTS, max_new_tokens=6, stop_token_ids=[9])["token_ids"])


def test_non_finite_settings_are_refused_at_export_and_by_generate_uncached(text_lm, lm):
    # Before: an export with temperature=nan and verify=False failed every serving request.
    with pytest.raises(ValueError, match="`temperature` must be finite, got nan"):
        generation_settings(text_lm, temperature=float("nan"))
    with pytest.raises(ValueError, match="`temperature` must be finite, got inf"):
        generate_uncached(lm, [[1, 2]], 2, temperature=float("inf"))


@pytest.mark.parametrize("model_name", ["lm", "text_seq2seq"])
def test_too_long_names_max_length_and_the_remedies(model_name, request):
    model = request.getfixturevalue(model_name)
    if model_name == "lm":
        with pytest.raises(ValueError, match=r"\(60 tokens\) plus `max_new_tokens` \(10\) is 70, more than the "
                                             r"model's max_length=64.*keras_transformers\.generation\."
                                             r"generate_uncached, which slides a window.*larger `max_length`"):
            model.generate([[1] * 60], max_new_tokens=10)
    else:  # no sliding window for a seq2seq decoder: a larger max_length is the way
        with pytest.raises(ValueError, match=r"more than the model's max_length=48.*larger `max_length`") as error:
            model.generate([[1]], max_new_tokens=48, start_token_id=2)
        assert "generate_uncached" not in str(error.value)


# --------------------------------------------------------------------- the text API (item 6)

def test_a_bare_string_is_one_prompt(text_lm, text_seq2seq):
    # Before: "abc" became three prompts, "a", "b" and "c".
    for model in (text_lm, text_seq2seq):
        one = model.generate_text("abc", max_new_tokens=4, **GRAPH)
        assert isinstance(one, str)
        assert one == model.generate_text(["abc"], max_new_tokens=4, **GRAPH)[0]


def test_an_empty_list_gives_an_empty_list(text_lm, text_seq2seq):
    assert text_lm.generate_text([], max_new_tokens=4) == []
    assert text_seq2seq.generate_text([], max_new_tokens=4) == []


def test_str_and_utf8_bytes_mix_or_a_clear_error(text_lm, text_seq2seq):
    for model in (text_lm, text_seq2seq):
        texts = ["abc", "déjà vu"]
        assert model.generate_text([texts[0], texts[1].encode("utf-8")], max_new_tokens=4, **GRAPH) == \
            model.generate_text(texts, max_new_tokens=4, **GRAPH)
    with pytest.raises(ValueError, match=r"`prompts` row 1 is bytes that are not UTF-8"):
        text_lm.generate_text(["abc", b"\xff\xfe"], max_new_tokens=4)
    with pytest.raises(TypeError, match=r"`sources` row 0 must be a string .* got int 5"):
        text_seq2seq.generate_text([5], max_new_tokens=4)
    with pytest.raises(TypeError, match="`prompts` must be a string or a list of strings, got int"):
        text_lm.generate_text(5, max_new_tokens=4)


def test_an_over_long_prompt_keeps_its_last_tokens_as_the_serving_signature_does(text_lm, serve):
    # Before: generate_text raised while the serving signature kept the last 40 tokens.
    long_prompt = "It was the best of times, it was the worst of times, it was"  # 59 + start > 48 - 8
    texts = [long_prompt, "hello"]
    got = text_lm.generate_text(texts, max_new_tokens=8, **GRAPH)
    kept = text_lm.preprocessor.prompt_ids(texts)[0][-40:]  # 48 - 8 = 40: the start token is dropped
    new = rows(text_lm.generate([kept], max_new_tokens=8, stop_token_ids=[3], **GRAPH))[0][40:]
    assert got[0] == text_lm.preprocessor.detokenize([new[:-1] if new[-1:] == [3] else new])[0]
    served = serve(text=tf.constant(texts))["generated_text"].numpy().tolist()
    assert [text.decode("utf-8") for text in served] == got
    with pytest.raises(ValueError, match=r"max_length=48.*generate_uncached"):
        text_lm.generate_text(["hi"], max_new_tokens=48)
