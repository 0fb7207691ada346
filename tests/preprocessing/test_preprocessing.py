"""Packing, truncation, MLM masking, seq2seq pairs and word-label alignment."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text

from keras_transformers.preprocessing import (
    IGNORE_LABEL,
    align_word_labels,
    mask_tokens,
    pack,
    seq2seq_pair,
    truncation_lengths,
)
from keras_transformers.tokenizers import wordpiece_tokenizer

CLS, SEP = 101, 102


def test_pack_single_sentences_truncates_and_pads():
    packed = pack(tf.ragged.constant([[1, 2, 3, 4, 5, 6], [7]]), sequence_length=6, start_id=CLS, separator_id=SEP)
    np.testing.assert_array_equal(packed["token_ids"], [[CLS, 1, 2, 3, 4, SEP], [CLS, 7, SEP, 0, 0, 0]])
    np.testing.assert_array_equal(packed["padding_mask"], [[1] * 6, [1, 1, 1, 0, 0, 0]])
    np.testing.assert_array_equal(packed["segment_ids"], np.zeros((2, 6)))


def test_pack_pairs_bert_style_with_segment_ids():
    packed = pack(tf.ragged.constant([[1, 2]]), tf.ragged.constant([[3, 4, 5]]), sequence_length=9,
                  start_id=CLS, separator_id=SEP)
    np.testing.assert_array_equal(packed["token_ids"], [[CLS, 1, 2, SEP, 3, 4, 5, SEP, 0]])
    np.testing.assert_array_equal(packed["segment_ids"], [[0, 0, 0, 0, 1, 1, 1, 1, 0]])
    np.testing.assert_array_equal(packed["padding_mask"], [[1] * 8 + [0]])


def test_truncation_equals_tensorflow_texts_round_robin_trimmer():
    rng = np.random.default_rng(0)
    first = rng.integers(0, 12, 200)
    second = rng.integers(0, 12, 200)
    for budget in (1, 5, 8, 13):
        ours = truncation_lengths(tf.constant(first), tf.constant(second), budget)
        trimmed = tensorflow_text.RoundRobinTrimmer(max_seq_length=budget).trim(
            [tf.ragged.range(first), tf.ragged.range(second)])
        np.testing.assert_array_equal(ours[0], trimmed[0].row_lengths())
        np.testing.assert_array_equal(ours[1], trimmed[1].row_lengths())


def test_pack_runs_in_tf_data_and_uses_no_round_robin_op():
    dataset = tf.data.Dataset.from_tensor_slices(tf.ragged.constant([[1, 2], [3]])).batch(2).map(
        lambda ids: pack(ids, ids, sequence_length=6, start_id=CLS, separator_id=SEP))
    # budget 3 for (2, 2) tokens: round robin keeps 2 of the first, 1 of the second
    np.testing.assert_array_equal(next(iter(dataset))["token_ids"], [[CLS, 1, 2, SEP, 1, SEP], [CLS, 3, SEP, 3, SEP, 0]])
    graph = tf.function(lambda a, b: pack(a, b, sequence_length=8, start_id=CLS, separator_id=SEP)).get_concrete_function(
        tf.RaggedTensorSpec([None, None], tf.int32), tf.RaggedTensorSpec([None, None], tf.int32)).graph
    assert not [op.type for op in graph.get_operations() if "RoundRobin" in op.type]


def test_pack_rejects_a_length_with_no_room():
    with pytest.raises(ValueError, match="`sequence_length` 2 leaves no room"):
        pack(tf.ragged.constant([[1]]), sequence_length=2, start_id=CLS, separator_id=SEP)


def test_mask_tokens_statistics_and_labels_only_at_masked_positions():
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 1000, size=(400, 512)).astype(np.int32)
    maskable = rng.random(ids.shape) < 0.9
    masked, labels = (t.numpy() for t in mask_tokens(ids, maskable, mask_id=4, vocab_size=1000, seed=[1, 2]))
    selected = labels != IGNORE_LABEL
    assert not (selected & ~maskable).any()                    # never a special or padding token
    np.testing.assert_array_equal(labels[selected], ids[selected])   # labels are the originals
    np.testing.assert_array_equal(masked[~selected], ids[~selected])  # the rest untouched
    assert selected.sum() / maskable.sum() == pytest.approx(0.15, abs=0.003)
    became_mask = np.mean(masked[selected] == 4)
    kept = np.mean(masked[selected] == ids[selected])
    assert became_mask == pytest.approx(0.8, abs=0.01)
    assert kept == pytest.approx(0.1 + 0.1 / 1000, abs=0.01)      # kept, or a random id equal to it
    assert 1 - became_mask - kept == pytest.approx(0.1, abs=0.01)  # a different random id
    again, _ = mask_tokens(ids, maskable, mask_id=4, vocab_size=1000, seed=[1, 2])
    np.testing.assert_array_equal(again, masked)


def test_seq2seq_pair_shifts_the_target_right():
    inputs, labels = seq2seq_pair(tf.ragged.constant([[5, 6, 7, 8]]), tf.ragged.constant([[9, 10]]),
                                  source_length=4, target_length=4, start_id=1, end_id=2)
    np.testing.assert_array_equal(inputs["encoder_token_ids"], [[5, 6, 7, 2]])
    np.testing.assert_array_equal(inputs["decoder_token_ids"], [[1, 9, 10, 0]])
    np.testing.assert_array_equal(labels, [[9, 10, 2, 0]])
    np.testing.assert_array_equal(inputs["decoder_padding_mask"], [[1, 1, 1, 0]])


def test_word_labels_go_to_the_first_subword_of_each_word():
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "eu", "reject", "##s", "german", "call",
                  "to", "boy", "##cott", "brit", "##ish", "lamb"]
    tokenizer = wordpiece_tokenizer(vocabulary)
    # A CoNLL-2003-style sentence with IOB2 tags as ids: O=0, B-ORG=1, B-MISC=2.
    words = tf.ragged.constant([["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb"]])
    tags = tf.ragged.constant([[1, 0, 2, 0, 0, 0, 2, 0]])
    word_pieces = tf.function(tokenizer.tokenize)(words)  # in a graph, as in tf.data: a ragged tensor
    pieces, labels = align_word_labels(word_pieces, tags)
    assert pieces.to_list() == [[5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]]
    assert labels.to_list() == [[1, 0, IGNORE_LABEL, 2, 0, 0, 0, IGNORE_LABEL, 2, IGNORE_LABEL, 0]]
    packed = pack(labels, sequence_length=14, start_id=IGNORE_LABEL, separator_id=IGNORE_LABEL, pad_id=IGNORE_LABEL)
    assert packed["token_ids"].numpy()[0, :3].tolist() == [IGNORE_LABEL, 1, 0]


def test_preprocessors_called_eagerly_take_lists_of_strings_of_different_lengths():
    from keras_transformers.preprocessing import CausalLMPreprocessor, TextPreprocessor
    from keras_transformers.tokenizers import byte_tokenizer

    texts = ["short", "a longer text"]
    text = TextPreprocessor(byte_tokenizer(), 8, start_id=1, separator_id=2)
    eager = text(texts)  # KerasHub's tokenizer gives Python lists here
    graph = tf.function(text)(tf.constant(texts))
    np.testing.assert_array_equal(eager["token_ids"], graph["token_ids"])
    np.testing.assert_array_equal(eager["token_ids"][0], [1, *b"short", 2, 0])
    np.testing.assert_array_equal(eager["padding_mask"].numpy().sum(1), [7, 8])
    pairs = text((["a", "b"], ["cd", b"e"]))  # a tuple is a pair; bytes are UTF-8
    np.testing.assert_array_equal(pairs["token_ids"][1, :5], [1, ord("b"), 2, ord("e"), 2])
    inputs, labels = CausalLMPreprocessor(byte_tokenizer(), 6, start_id=1, end_id=2)(texts)
    np.testing.assert_array_equal(inputs["token_ids"][0], [1, *b"short"])
    np.testing.assert_array_equal(labels[0], [*b"short", 2])
    with pytest.raises(TypeError, match=r"`texts` must be a list of strings \(a batch\), got a single str"):
        text("short")
    with pytest.raises(TypeError, match=r"`texts\[1\]` must be a str, got int 3"):
        text(["a", 3])
    with pytest.raises(ValueError, match=r"`texts\[0\]` is bytes that are not valid UTF-8"):
        text([b"\xff"])


def test_prompt_and_source_ids_trace_once_for_every_batch_size():
    from keras_transformers.preprocessing import CausalLMPreprocessor, Seq2SeqPreprocessor
    from keras_transformers.tokenizers import byte_tokenizer

    lm = CausalLMPreprocessor(byte_tokenizer(), 6, start_id=1, end_id=2)
    for texts in (["ab"], ["ab", "c"], ["x", "yz", ""], ["ab"]):
        assert lm.prompt_ids(texts) == [[1, *text.encode()] for text in texts]
    assert lm._graph_functions["prompts"].experimental_get_tracing_count() == 1
    seq2seq = Seq2SeqPreprocessor(byte_tokenizer(), source_length=6, target_length=6, start_id=1, end_id=2)
    first, second = seq2seq.source_ids(["ab"]), seq2seq.source_ids(["ab", "cde"])
    assert second[0] == first[0] and len(second) == 2
    assert seq2seq._graph_functions["sources"].experimental_get_tracing_count() == 1
