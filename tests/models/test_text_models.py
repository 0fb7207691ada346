"""Text in, text out: a classifier with a preprocessor fits on strings, predicts label names,
saves whole, and exports a serving graph whose ops TF Serving has."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transformers import CausalLM, EncoderClassifier, EncoderTokenClassifier, Seq2Seq
from keras_transformers.export import check_serving_ops
from keras_transformers.ops import jit_compile_scope
from keras_transformers.preprocessing import (
    CausalLMPreprocessor,
    Seq2SeqPreprocessor,
    TaggingPreprocessor,
    TextPreprocessor,
)
from keras_transformers.tokenizers import character_tokenizer, wordpiece_tokenizer
from tests.models.helpers import tiny_config

WORDS = ["good", "great", "fine", "nice", "bad", "awful", "poor", "sad", "the", "film", "was", "a", "plot"]
VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS


def sentiment_texts(count, seed):
    """Sentences whose label is whether they hold a positive or a negative word."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(count):
        label = int(rng.integers(2))
        word = rng.choice(WORDS[:4] if label else WORDS[4:8])
        filler = list(rng.choice(WORDS[8:], size=rng.integers(1, 5)))
        filler.insert(int(rng.integers(len(filler) + 1)), word)
        texts.append(" ".join(filler))
        labels.append(label)
    return np.array(texts), np.array(labels)


@pytest.fixture(scope="module")
def classifier():
    keras.utils.set_random_seed(0)
    preprocessor = TextPreprocessor(wordpiece_tokenizer(VOCABULARY), sequence_length=10, start_id=2,
                                    separator_id=3)
    model = EncoderClassifier(tiny_config("bert_like", vocab_size=len(VOCABULARY), dropout=0.0),
                              num_classes=2, label_names=["negative", "positive"], preprocessor=preprocessor)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    texts, labels = sentiment_texts(512, seed=0)
    model.fit(texts, labels, batch_size=32, epochs=4, verbose=0,
              validation_data=tf.data.Dataset.from_tensor_slices(sentiment_texts(64, seed=2)).batch(32))
    return model


def test_fits_on_strings_and_predicts_label_names(classifier):
    texts, labels = sentiment_texts(128, seed=1)
    assert classifier.evaluate(texts, labels, verbose=0, return_dict=True)["accuracy"] > 0.95
    predicted = classifier.predict_labels(["the film was great", "a sad plot"])
    assert predicted["labels"] == ["positive", "negative"]
    assert predicted["probabilities"].shape == (2, 2)
    np.testing.assert_allclose(predicted["probabilities"].sum(-1), 1.0, rtol=1e-5)
    dataset = tf.data.Dataset.from_tensor_slices((texts, labels)).batch(16)
    assert classifier.evaluate(dataset, verbose=0, return_dict=True)["accuracy"] > 0.95


def test_saves_and_loads_whole_with_its_tokenizer(classifier, tmp_path):
    path = tmp_path / "classifier.keras"
    classifier.save(path)
    restored = keras.saving.load_model(path)
    texts = ["the film was great", "a sad plot", "poor nice"]
    np.testing.assert_allclose(restored.predict(texts, verbose=0), classifier.predict(texts, verbose=0), atol=1e-6)
    assert restored.predict_labels(texts)["labels"] == classifier.predict_labels(texts)["labels"]


def test_string_serving_graph_passes_the_tf_serving_op_allowlist(classifier, tmp_path):
    module = tf.Module()
    # Track what the graph reads (the weights, the tokenizer's vocabulary table) without the
    # Keras model itself, whose automatic Keras signature would assume float inputs.
    module.weights = list(classifier.weights)
    module.preprocessor = classifier.preprocessor

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(texts):
        return {"probabilities": tf.nn.softmax(classifier(classifier.preprocessor(texts)))}

    with jit_compile_scope(False):  # TF Serving on CPU runs without XLA
        module.serve = serve.get_concrete_function()
        tf.saved_model.save(module, str(tmp_path / "served"), signatures={"serving_default": module.serve})
    assert check_serving_ops(tmp_path / "served") == []
    loaded = tf.saved_model.load(str(tmp_path / "served"))
    texts = tf.constant(["the film was great", "a sad plot"])
    np.testing.assert_allclose(loaded.signatures["serving_default"](texts)["probabilities"].numpy(),
                               tf.nn.softmax(classifier.predict(texts.numpy(), verbose=0)).numpy(), atol=1e-5)


def test_label_names_must_match_the_classes():
    with pytest.raises(ValueError, match="`label_names` has 3 names for num_classes=2"):
        EncoderClassifier(tiny_config(), num_classes=2, label_names=["a", "b", "c"])


def test_causal_lm_fits_on_strings_and_generates_text(tmp_path):
    keras.utils.set_random_seed(0)
    # ASCII characters as ids; STX (2) and ETX (3) as start and end tokens.
    preprocessor = CausalLMPreprocessor(character_tokenizer(vocabulary_size=128), sequence_length=12,
                                        start_id=2, end_id=3)
    lm = CausalLM(tiny_config("gpt2_like", vocab_size=128, max_length=16), preprocessor=preprocessor)
    lm.compile(optimizer=keras.optimizers.Adam(1e-2))
    texts = np.array(["abcdefgh", "hgfedcba"] * 128)
    history = lm.fit(texts, epochs=6, batch_size=32, verbose=0)
    assert history.history["accuracy"][-1] > 0.8
    assert lm.generate_text(["abc", "hgf"], max_new_tokens=8) == ["defgh", "edcba"]  # stopped at ETX
    path = tmp_path / "lm.keras"
    lm.save(path)
    assert keras.saving.load_model(path).generate_text(["abcd"], max_new_tokens=8) == ["efgh"]


def test_generate_text_needs_a_causal_lm_preprocessor():
    with pytest.raises(ValueError, match="generate_text needs a CausalLMPreprocessor"):
        CausalLM(tiny_config("gpt2_like")).generate_text(["a"], max_new_tokens=2)


def test_seq2seq_fits_on_string_pairs_and_translates(tmp_path):
    keras.utils.set_random_seed(0)
    preprocessor = Seq2SeqPreprocessor(character_tokenizer(vocabulary_size=128), source_length=8,
                                       target_length=8, start_id=2, end_id=3)
    model = Seq2Seq(tiny_config("gpt2_like", vocab_size=128, max_length=16), preprocessor=preprocessor)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    sources = np.array(["abc", "bca", "cab", "ded", "eed", "fad"] * 64)
    targets = np.array(["cba", "acb", "bac", "ded", "dee", "daf"] * 64)  # each source reversed
    history = model.fit((sources, targets), epochs=25, batch_size=32, verbose=0)
    assert history.history["accuracy"][-1] > 0.95
    expected = ["cba", "acb", "bac", "ded", "dee", "daf"]
    assert model.generate_text(sources[:6], max_new_tokens=6) == expected
    assert model.generate_text(sources[:6], max_new_tokens=6, num_beams=3) == expected
    path = tmp_path / "seq2seq.keras"
    model.save(path)
    assert keras.saving.load_model(path).generate_text(["abc"], max_new_tokens=6) == ["cba"]


def test_tagger_fits_on_conll_style_words_and_predicts_entity_spans(tmp_path):
    keras.utils.set_random_seed(0)
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "eu", "reject", "##s", "german", "call",
                  "to", "boy", "##cott", "brit", "##ish", "lamb", "peter", "bl", "##ack", "##burn"]
    label_names = ["B-MISC", "B-ORG", "B-PER", "I-MISC", "I-ORG", "I-PER", "O"]
    preprocessor = TaggingPreprocessor(wordpiece_tokenizer(vocabulary), sequence_length=16, start_id=2,
                                       separator_id=3, label_names=label_names)
    tagger = EncoderTokenClassifier(tiny_config("bert_like", vocab_size=len(vocabulary), dropout=0.0),
                                    num_classes=len(label_names), preprocessor=preprocessor)
    tagger.compile(optimizer=keras.optimizers.Adam(3e-3))
    sentences = [(["EU", "rejects", "German", "call"], ["B-ORG", "O", "B-MISC", "O"]),
                 (["Peter", "Blackburn"], ["B-PER", "I-PER"]),
                 (["boycott", "British", "lamb"], ["O", "B-MISC", "O"])]
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(sentences * 64), output_signature=(tf.TensorSpec([None], tf.string),) * 2)
    history = tagger.fit(dataset.ragged_batch(16).repeat(), steps_per_epoch=12, epochs=6, verbose=0)
    assert history.history["accuracy"][-1] > 0.95
    entities = tagger.predict_entities([words for words, _ in sentences])
    assert entities == [
        [{"type": "ORG", "start": 0, "end": 0, "text": "EU"}, {"type": "MISC", "start": 2, "end": 2, "text": "German"}],
        [{"type": "PER", "start": 0, "end": 1, "text": "Peter Blackburn"}],
        [{"type": "MISC", "start": 1, "end": 1, "text": "British"}]]
    path = tmp_path / "tagger.keras"
    tagger.save(path)
    assert keras.saving.load_model(path).predict_entities([["Peter", "Blackburn"]]) == [entities[1]]


def test_tagging_preprocessor_puts_tags_on_first_subwords():
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "eu", "reject", "##s"]
    preprocessor = TaggingPreprocessor(wordpiece_tokenizer(vocabulary), sequence_length=6, start_id=2,
                                       separator_id=3, label_names=["B-ORG", "O"])
    words, tags = tf.ragged.constant([["EU", "rejects"]]), tf.ragged.constant([["B-ORG", "O"]])
    inputs, labels = tf.function(preprocessor)((words, tags))
    np.testing.assert_array_equal(inputs["token_ids"], [[2, 5, 6, 7, 3, 0]])
    np.testing.assert_array_equal(labels, [[-100, 0, 1, -100, -100, -100]])
    assert tf.function(preprocessor.first_piece_positions)(words).to_list() == [[1, 2]]
