"""CausalLM.generate and Seq2Seq.generate: the cached, compiled loop against full recomputation."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transformers import CausalLM, Seq2Seq
from keras_transformers.generation import cache_info, generate_uncached, trace_count
from keras_transformers.ops.matmul import SINGLE_ROW_FORM_MIN_WIDTH
from tests.models.helpers import tiny_config

PROMPTS = [[5, 17, 3, 44, 9], [8], [30, 2, 61]]  # different lengths, batched


def causal_lm(family="gpt2_like", seed=0, **changes):
    # A wide initializer makes random-weight models' predictions vary from token to token.
    keras.utils.set_random_seed(seed)
    return CausalLM(tiny_config(family, **{"initializer_range": 0.5, **changes}))


@pytest.fixture(scope="module")
def lm():
    return causal_lm()


@pytest.fixture(scope="module")
def seq2seq():
    keras.utils.set_random_seed(0)
    return Seq2Seq(tiny_config("gpt2_like", initializer_range=0.5))


def rows(outputs, key="token_ids", mask_key="padding_mask"):
    """Each row's real tokens, as lists."""
    return [row[mask].tolist() for row, mask in zip(outputs[key], outputs[mask_key])]


def greedy_by_recompute(lm, prompt, steps):
    sequence = list(prompt)
    for _ in range(steps):
        ids = np.array([sequence])
        sequence.append(int(lm({"token_ids": ids, "padding_mask": np.ones_like(ids)})[0, -1].numpy().argmax()))
    return sequence


@pytest.mark.parametrize("family", ["bert_like", "gpt2_like", "llama_like", "transformer_like"])
def test_cached_greedy_equals_uncached_greedy_for_batched_prompts_of_different_lengths(family):
    lm = causal_lm(family)
    outputs = lm.generate(PROMPTS, max_new_tokens=7)
    expected = [generate_uncached(lm, [prompt], 7, temperature=0)[0].tolist() for prompt in PROMPTS]
    assert rows(outputs) == expected
    assert outputs["token_ids"].shape == (3, 5 + 7)
    assert len(set(map(tuple, expected))) == 3 and len(set(expected[0][5:])) > 1  # not degenerate


def test_generated_tokens_follow_each_prompt_then_padding(lm):
    outputs = lm.generate(PROMPTS, max_new_tokens=4)
    for row, prompt in enumerate(PROMPTS):
        length = len(prompt) + 4
        assert outputs["token_ids"][row, :len(prompt)].tolist() == prompt
        assert outputs["padding_mask"][row].tolist() == [True] * length + [False] * (9 - length)
        assert (outputs["token_ids"][row, length:] == lm.config.pad_token_id).all()


def test_padded_array_with_mask_and_ragged_tensor_equal_list_of_rows(lm):
    ids = np.zeros((3, 6), np.int32)
    mask = np.zeros((3, 6), np.int32)
    for row, prompt in enumerate(PROMPTS):
        ids[row, :len(prompt)], mask[row, :len(prompt)] = prompt, 1
    from_array = lm.generate(ids, max_new_tokens=5, padding_mask=mask)
    from_ragged = lm.generate(tf.ragged.constant(PROMPTS), max_new_tokens=5)
    assert rows(from_array) == rows(lm.generate(PROMPTS, max_new_tokens=5)) == rows(from_ragged)


def seq2seq_greedy_by_recompute(model, source, decoder_prompt, steps):
    target = list(decoder_prompt)
    for _ in range(steps):
        logits = model({"encoder_token_ids": np.array([source]),
                        "encoder_padding_mask": np.ones((1, len(source))),
                        "decoder_token_ids": np.array([target]),
                        "decoder_padding_mask": np.ones((1, len(target)))})
        target.append(int(logits[0, -1].numpy().argmax()))
    return target


def test_seq2seq_cached_greedy_equals_uncached_greedy_for_batched_sources_and_prompts(seq2seq):
    decoder_prompts = [[1], [1, 40], [1]]
    outputs = seq2seq.generate(PROMPTS, max_new_tokens=6, decoder_token_ids=decoder_prompts)
    expected = [seq2seq_greedy_by_recompute(seq2seq, source, prompt, 6)
                for source, prompt in zip(PROMPTS, decoder_prompts)]
    assert rows(outputs, "decoder_token_ids", "decoder_padding_mask") == expected
    assert len(set(map(tuple, expected))) == 3


def test_seq2seq_start_token_is_a_one_token_decoder_prompt(seq2seq):
    by_start = seq2seq.generate(PROMPTS, max_new_tokens=4, start_token_id=1)
    by_prompt = seq2seq.generate(PROMPTS, max_new_tokens=4, decoder_token_ids=[[1]] * 3)
    np.testing.assert_array_equal(by_start["decoder_token_ids"], by_prompt["decoder_token_ids"])
    assert (by_start["decoder_token_ids"][:, 0] == 1).all()


@pytest.mark.parametrize("model_name", ["lm", "seq2seq"])
def test_one_beam_and_top_k_1_are_greedy(model_name, request):
    model = request.getfixturevalue(model_name)
    kwargs = {"start_token_id": 1} if model_name == "seq2seq" else {}
    greedy = model.generate(PROMPTS, max_new_tokens=6, **kwargs)
    for other in (dict(num_beams=1), dict(temperature=3.0, top_k=1, seed=5)):
        for key, value in model.generate(PROMPTS, max_new_tokens=6, **kwargs, **other).items():
            np.testing.assert_array_equal(value, greedy[key])


def test_sampling_same_seed_same_samples_other_seed_other_samples(lm):
    settings = dict(max_new_tokens=10, temperature=1.5, top_p=0.9)
    first = lm.generate(PROMPTS, seed=7, **settings)["token_ids"]
    np.testing.assert_array_equal(first, lm.generate(PROMPTS, seed=7, **settings)["token_ids"])
    assert (first != lm.generate(PROMPTS, seed=8, **settings)["token_ids"]).any()


def test_sampling_follows_the_model_distribution():
    """The first sampled token of a fixed prompt, over many seeds in one batch, has the
    frequencies of softmax(logits / T) restricted to the top k."""
    lm = causal_lm(initializer_range=0.05)  # a flat-ish distribution: many tokens likely
    prompt = [7, 3]
    logits = lm({"token_ids": np.array([prompt]), "padding_mask": np.ones((1, 2))})[0, -1].numpy()
    outputs = lm.generate([prompt] * 4000, max_new_tokens=1, temperature=0.5, top_k=5, seed=1)
    samples = outputs["token_ids"][:, 2]
    top5 = np.argsort(-logits)[:5]
    assert set(samples) <= set(top5)
    p = np.exp((logits[top5] - logits[top5].max()) / 0.5)
    p /= p.sum()
    frequencies = np.array([np.mean(samples == token) for token in top5])
    np.testing.assert_allclose(frequencies, p, atol=0.03)


def sequence_log_prob(lm, prompt, continuation):
    ids = np.array([prompt + continuation])
    log_probs = tf.nn.log_softmax(lm({"token_ids": ids, "padding_mask": np.ones_like(ids)})[0]).numpy()
    return sum(log_probs[len(prompt) - 1 + i, token] for i, token in enumerate(continuation))


def test_beam_search_wide_enough_to_be_exhaustive_finds_the_most_likely_continuation():
    lm = CausalLM(tiny_config("gpt2_like", vocab_size=6, initializer_range=0.5))
    prompt, steps = [1, 4], 3
    # 36 beams hold every 2-token prefix, so beam search is exact for 3 tokens.
    found = lm.generate([prompt], max_new_tokens=steps, num_beams=36, length_penalty=0.0)
    best = max(itertools.product(range(6), repeat=steps),
               key=lambda continuation: sequence_log_prob(lm, prompt, list(continuation)))
    assert found["token_ids"][0, 2:].tolist() == list(best)
    greedy = lm.generate([prompt], max_new_tokens=steps)["token_ids"][0, 2:].tolist()
    assert sequence_log_prob(lm, prompt, list(best)) >= sequence_log_prob(lm, prompt, greedy)


def test_beam_search_batched_prompts_equal_one_at_a_time(lm):
    together = lm.generate(PROMPTS, max_new_tokens=5, num_beams=4, stop_token_ids=[9])
    for row, prompt in enumerate(PROMPTS):
        alone = lm.generate([prompt], max_new_tokens=5, num_beams=4, stop_token_ids=[9])
        assert rows(together)[row] == rows(alone)[0]


@pytest.mark.parametrize("num_beams", [1, 3])
def test_stop_tokens_end_each_row_independently_and_pad_the_rest(lm, num_beams):
    free = lm.generate(PROMPTS, max_new_tokens=8, num_beams=num_beams)
    # Stop on a token row 0 emits third or later and row 1 never emits.
    new_tokens = [rows(free)[row][len(prompt):] for row, prompt in enumerate(PROMPTS)]
    stop = next(token for token in new_tokens[0][2:] if token not in new_tokens[1])
    stopped = lm.generate(PROMPTS, max_new_tokens=8, num_beams=num_beams, stop_token_ids=[stop])
    for row, prompt in enumerate(PROMPTS):
        new = new_tokens[row]
        expected = new[:new.index(stop) + 1] if stop in new else new
        if num_beams == 1 or stop not in new:
            assert rows(stopped)[row] == prompt + expected
        got = rows(stopped)[row][len(prompt):]
        assert stop not in got[:-1]  # nothing after a stop token
        length = len(prompt) + len(got)
        assert (stopped["token_ids"][row, length:] == lm.config.pad_token_id).all()
    assert rows(stopped)[1] == rows(free)[1]


def test_generation_stops_early_when_every_row_has_stopped(lm):
    first = lm.generate(PROMPTS, max_new_tokens=1)["token_ids"]
    stops = [int(first[row, len(prompt)]) for row, prompt in enumerate(PROMPTS)]
    outputs = lm.generate(PROMPTS, max_new_tokens=6, stop_token_ids=stops)
    assert outputs["padding_mask"].sum(axis=1).tolist() == [len(p) + 1 for p in PROMPTS]


def test_same_shaped_calls_trace_once():
    lm = causal_lm()
    lm.generate(PROMPTS, max_new_tokens=5, temperature=0.7, seed=1)
    assert trace_count(lm) == 1 and cache_info(lm)["programs"] == 1
    # Same batch bucket (3 rows -> 4) and width bucket (longest prompt + new tokens: 10, 12,
    # 13 -> 16); other temperature, seed, stop tokens (none or one: a list of one) and
    # max_new_tokens, which are inputs, not constants of the trace.
    lm.generate([[1, 2, 3, 4, 5, 6, 7], [3], [4]], max_new_tokens=5, temperature=1.3, seed=2)
    lm.generate(PROMPTS, max_new_tokens=5, temperature=0.7, seed=1, stop_token_ids=[3])
    lm.generate(PROMPTS + [[1]], max_new_tokens=8, temperature=0.7, seed=1, stop_token_ids=4)
    assert trace_count(lm) == 1 and cache_info(lm)["programs"] == 1
    lm.generate(PROMPTS, max_new_tokens=12, temperature=0.7)
    # 5 + 12 = 17 -> a buffer of 32: a new XLA program of the same trace
    assert trace_count(lm) == 1 and cache_info(lm)["programs"] == 2


@pytest.mark.parametrize("num_beams", [1, 2])
def test_the_prefill_runs_over_the_prompts_bucket_into_a_cache_of_the_buffer_width(monkeypatch, num_beams):
    lm = causal_lm()  # its own decode loops: traced afresh with the recording prefill
    prefill, step = lm.generation_functions()
    seen = []

    def record(shape, cache_length, lengths):  # runs when the graph runs: the real values
        seen.append((tuple(shape.numpy()), int(cache_length), lengths.numpy().tolist()))
        return 0

    def recording_prefill(prompt_ids, prompt_lengths, cache_length):
        recorded = tf.py_function(record, [tf.shape(prompt_ids), cache_length, prompt_lengths], tf.int32)
        with tf.control_dependencies([recorded]):
            return prefill(tf.identity(prompt_ids), prompt_lengths, cache_length)

    expected = lm.generate(PROMPTS, max_new_tokens=20, num_beams=num_beams)["token_ids"]
    monkeypatch.setattr(lm, "generation_functions", lambda: (recording_prefill, step))
    # A graph loop: py_function cannot run under XLA.
    outputs = lm.generate(PROMPTS, max_new_tokens=20, num_beams=num_beams, jit_compile=False)
    # 3 prompts -> 4 rows (the padding row reads one token); longest 5 -> 8 columns;
    # 5 + 20 new tokens -> a buffer (= cache) of 32 slots.
    assert seen == [((4, 8), 32, [5, 1, 3, 1])]
    np.testing.assert_array_equal(outputs["token_ids"], expected)


def test_jit_compile_false_gives_the_same_tokens(lm):
    np.testing.assert_array_equal(lm.generate(PROMPTS, max_new_tokens=4, jit_compile=False)["token_ids"],
                                  lm.generate(PROMPTS, max_new_tokens=4)["token_ids"])


@pytest.mark.parametrize("quantized", [False, True])
def test_a_head_wide_enough_for_the_single_row_form_decodes_as_without_xla(quantized):
    # A tied table 128 wide: at batch 1 under XLA the head is matmul(h, transpose(E))
    # (ops.matmul_transposed), at batch 2 and without XLA the transposed dot.
    lm = causal_lm(hidden_size=SINGLE_ROW_FORM_MIN_WIDTH)
    if quantized:
        lm.build(None)
        lm.quantize("int8")
    for prompts in ([PROMPTS[0]], PROMPTS[:2]):
        compiled = lm.generate(prompts, max_new_tokens=6)
        np.testing.assert_array_equal(compiled["token_ids"],
                                      lm.generate(prompts, max_new_tokens=6, jit_compile=False)["token_ids"])
    if not quantized:
        assert rows(compiled) == [greedy_by_recompute(lm, prompt, 6) for prompt in PROMPTS[:2]]


def test_cache_is_kept_in_the_compute_dtype_under_mixed_precision():
    lm = CausalLM(tiny_config("llama_like", initializer_range=0.5), dtype="mixed_bfloat16")
    cache = lm.backbone.init_cache(2, 16)
    assert cache[0][0].dtype == tf.bfloat16 and cache[0][0].shape == (2, 2, 16, 8)
    outputs = lm.generate(PROMPTS, max_new_tokens=3)
    assert outputs["padding_mask"].sum() == sum(map(len, PROMPTS)) + 9


def test_a_model_generates_before_any_other_call():
    lm = causal_lm()
    assert not lm.built
    outputs = lm.generate([[1, 2]], max_new_tokens=2)
    assert lm.built and outputs["token_ids"].shape == (1, 4)
    # and is callable afterwards
    assert lm({"token_ids": outputs["token_ids"], "padding_mask": outputs["padding_mask"]}).shape == (1, 4, 64)


@pytest.mark.parametrize("kwargs, error", [
    (dict(token_ids=[[1, 64]]), r"`token_ids` holds id 64 \(row 0, position 1\), outside \[0, vocab_size=64\)"),
    (dict(token_ids=[[1], []]), "Every prompt in `token_ids` needs at least one token; row 1 is empty"),
    (dict(token_ids=[1, 2]), r"`token_ids` must be a list of id lists or have shape \(batch, prompt_len\)"),
    (dict(token_ids=[[1.5]]), "`token_ids` row 0 must be a flat list of integer ids"),
    (dict(token_ids=np.array([[1.5]])), "`token_ids` must be integers"),
    (dict(token_ids=np.ones((2, 3), int), padding_mask=[[0, 1, 1], [1, 1, 1]]),
     r"`padding_mask` must be right padding \(1s, then 0s\); row 0 is \[0, 1, 1\]"),
    (dict(max_new_tokens=0), "`max_new_tokens` must be a positive integer, got 0"),
    (dict(max_new_tokens=63), r"plus `max_new_tokens` \(63\) is 65, more than the model's max_length=64"),
    (dict(temperature=-0.5), "`temperature` must be >= 0"),
    (dict(temperature=1.0, top_k=0), r"`top_k` must be in \[1, vocab_size=64\], got 0"),
    (dict(temperature=1.0, top_p=1.5), r"`top_p` must be in \(0, 1\], got 1.5"),
    (dict(top_k=5), "with temperature=0 decoding is greedy"),
    (dict(num_beams=0), "`num_beams` must be a positive integer, got 0"),
    (dict(num_beams=2, temperature=1.0), "Beam search is deterministic"),
    (dict(stop_token_ids=[70]), r"`stop_token_ids` \[70\] must lie in \[0, vocab_size=64\)"),
])
def test_errors_name_the_argument_and_the_limit(lm, kwargs, error):
    arguments = dict(token_ids=[[1, 2]], max_new_tokens=2)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=error):
        lm.generate(**arguments)


@pytest.mark.parametrize("kwargs, error", [
    (dict(), "Pass exactly one of `start_token_id`"),
    (dict(start_token_id=1, decoder_token_ids=[[1]]), "Pass exactly one of `start_token_id`"),
    (dict(decoder_token_ids=[[1]]), "`decoder_token_ids` has 1 rows for 2 sources"),
    (dict(start_token_id=1, encoder_token_ids=[[1, 99]]),
     r"`encoder_token_ids` holds id 99 \(row 0, position 1\)"),
])
def test_seq2seq_errors(seq2seq, kwargs, error):
    arguments = dict(encoder_token_ids=[[3, 4], [5]], max_new_tokens=2)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=error):
        seq2seq.generate(**arguments)


def test_sliding_window_cached_greedy_past_the_window_equals_the_windowed_recompute():
    # Window 3 < every total length (5 + 7, 1 + 7, 3 + 7); Mistral/Qwen2-like switches.
    lm = causal_lm("llama_like", sliding_window=3, qkv_bias=True,
                   rope_scaling={"rope_type": "linear", "factor": 2.0})
    outputs = lm.generate(PROMPTS, max_new_tokens=7)
    expected = [generate_uncached(lm, [prompt], 7, temperature=0)[0].tolist() for prompt in PROMPTS]
    assert rows(outputs) == expected
    full = CausalLM(lm.config.replace(sliding_window=None))
    full.build()
    full.set_weights(lm.get_weights())
    ids = np.array([expected[0]])
    inputs = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    windowed, unwindowed = lm(inputs).numpy(), full(inputs).numpy()
    np.testing.assert_allclose(windowed[:, :3], unwindowed[:, :3], atol=1e-5)  # inside the window: equal
    assert np.abs(windowed[:, 3:] - unwindowed[:, 3:]).max() > 1e-2           # past it: the window counts
