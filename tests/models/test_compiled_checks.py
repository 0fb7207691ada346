"""Bad inputs on the default compiled path (``compile()``: XLA on), where the checks inside the
model are not built: the task models check every batch before the XLA step (issue 14)."""

import re
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transformers import CausalLM, EncoderClassifier, EncoderTokenClassifier, Seq2Seq, TransformerConfig
from keras_transformers.preprocessing import CausalLMPreprocessor, TextPreprocessor
from keras_transformers.tokenizers import byte_tokenizer, character_tokenizer

VOCAB = 64
BATCH, SEQ = 4, 8


def batch(rng=np.random.default_rng(0)):
    ids = rng.integers(1, VOCAB, (BATCH, SEQ)).astype("int32")
    return {"token_ids": ids, "padding_mask": np.ones_like(ids)}, ids.copy()


@pytest.fixture(scope="module")
def lm():
    keras.utils.set_random_seed(0)
    model = CausalLM(TransformerConfig.from_preset("tiny", vocab_size=VOCAB, norm_first=True, num_layers=1))
    model.compile(optimizer=keras.optimizers.SGD(0.1))  # the default: jit_compile on
    return model


@pytest.fixture(scope="module")
def classifier():
    keras.utils.set_random_seed(0)
    model = EncoderClassifier(TransformerConfig.from_preset("tiny", vocab_size=VOCAB, num_layers=1),
                              num_classes=2, label_names=["no", "yes"])
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    return model


def assertion_text(error):
    return " ".join(line for line in str(error).splitlines() if "assertion failed" in line)


def test_the_default_compile_trains_with_xla_inside_the_checked_step(lm):
    x, y = batch()
    history = lm.fit(x, y, batch_size=BATCH, epochs=2, verbose=0).history
    assert history["loss"][1] < history["loss"][0]
    assert lm.jit_compile is True
    step = lm._xla_steps["train"]
    assert step.function_spec is not None and step._jit_compile is True


@pytest.mark.parametrize("bad_id", [VOCAB, 10**9, -5])
@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
def test_out_of_range_ids_are_refused_on_the_compiled_path(lm, method, bad_id):
    x, y = batch()
    x["token_ids"][1, 3] = bad_id
    weights = [w.numpy().copy() for w in lm.weights]
    call = {"fit": lambda: lm.fit(x, y, batch_size=BATCH, verbose=0),
            "evaluate": lambda: lm.evaluate(x, y, batch_size=BATCH, verbose=0),
            "predict": lambda: lm.predict(x, batch_size=BATCH, verbose=0)}[method]
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        call()
    assert re.search(rf"`token_ids` holds id\] \[{bad_id}\] \[outside the vocabulary \[0, vocab_size={VOCAB}\)",
                     assertion_text(error.value)), assertion_text(error.value)
    for before, after in zip(weights, lm.weights):  # nothing was trained on the bad batch
        np.testing.assert_array_equal(before, after.numpy())


def test_out_of_range_labels_are_refused_on_the_compiled_path(lm, classifier):
    x, y = batch()
    y[2, 1] = 10**6
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`labels` holds id\] \[1000000\] \[outside "
                                                             rf"the classes \[0, vocab_size={VOCAB}\)"):
        lm.fit(x, y, batch_size=BATCH, verbose=0)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"`labels` holds id\] \[5\] \[outside the classes \[0, num_classes=2\)"):
        classifier.fit(x, np.array([0, 1, 5, 0]), batch_size=BATCH, verbose=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`labels` holds id\] \[-1\]"):
        classifier.evaluate(x, np.array([0, 1, -1, 0]), batch_size=BATCH, verbose=0)


def test_negative_labels_are_still_ignored_by_per_token_models(lm):
    x, y = batch()
    y[:, :2] = -100
    assert np.isfinite(lm.evaluate(x, y, batch_size=BATCH, verbose=0)[0])


def test_seq2seq_checks_both_sides_when_compiled():
    model = Seq2Seq(TransformerConfig.from_preset("tiny", vocab_size=VOCAB, num_layers=1, num_decoder_layers=1))
    model.compile(optimizer="sgd")
    x, y = batch()
    inputs = {"encoder_token_ids": x["token_ids"], "encoder_padding_mask": x["padding_mask"],
              "decoder_token_ids": x["token_ids"].copy(), "decoder_padding_mask": x["padding_mask"]}
    inputs["decoder_token_ids"][0, 0] = VOCAB + 1
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"`decoder_token_ids` holds id\] \[{VOCAB + 1}\]"):
        model.fit(inputs, y, batch_size=BATCH, verbose=0)


@pytest.mark.parametrize("value", [0.5, 2.0, -1.0, float("nan")])
def test_masks_must_be_booleans_or_zero_one(classifier, value):
    x, _ = batch()
    mask = x["padding_mask"].astype("float32")
    mask[1, 2] = value
    with pytest.raises(ValueError, match=r"`padding_mask` must hold booleans or 0/1 \(1 = real token\), got "):
        classifier({"token_ids": x["token_ids"], "padding_mask": mask})  # eagerly
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`padding_mask` must hold booleans or 0/1"):
        classifier.predict({"token_ids": x["token_ids"], "padding_mask": mask}, verbose=0)


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
def test_every_pooling_is_defined_on_an_all_padding_row(pooling):
    keras.utils.set_random_seed(0)
    model = EncoderClassifier(TransformerConfig.from_preset("tiny", vocab_size=VOCAB, num_layers=1),
                              num_classes=2, pooling=pooling, dropout=0.0)
    x, _ = batch()
    x["padding_mask"][1] = 0
    logits = model(x).numpy()
    assert np.isfinite(logits).all() and np.abs(logits).max() < 100
    if pooling != "cls":  # pooled zeros: the classifier's bias alone
        np.testing.assert_allclose(logits[1], model.classifier.bias.numpy(), atol=1e-6)


def test_a_tokenizer_with_more_ids_than_the_vocabulary_is_refused_when_attached():
    config = TransformerConfig.from_preset("tiny", vocab_size=VOCAB)
    with pytest.raises(ValueError, match=rf"tokenizer has 256 ids, more than the model's vocab_size={VOCAB}"):
        EncoderClassifier(config, num_classes=2, preprocessor=TextPreprocessor(byte_tokenizer(), 8, 1, 2))
    with pytest.raises(ValueError, match=r"tokenizer has 1114112 ids"):
        CausalLM(config, preprocessor=CausalLMPreprocessor(character_tokenizer(), 8, 1, 2))
    with pytest.raises(ValueError, match=rf"end_id=70 is outside the model's vocabulary \[0, vocab_size={VOCAB}\)"):
        CausalLM(config, preprocessor=CausalLMPreprocessor(character_tokenizer(vocabulary_size=VOCAB), 8, 1, 70))


def test_compiled_predict_on_an_empty_batch_is_a_clear_error(classifier):
    x, _ = batch()
    empty = {key: value[:0] for key, value in x.items()}
    with pytest.raises(ValueError, match=r"`x` holds no examples \(batch size 0\)"):
        classifier.predict(empty, verbose=0)
    dataset = tf.data.Dataset.from_tensor_slices(x).take(0).batch(2)
    with pytest.raises(ValueError, match="yielded no batches"):
        classifier.predict(dataset, verbose=0)


def test_fit_on_a_dataset_does_not_warn_about_shuffle():
    classifier = EncoderClassifier(TransformerConfig.from_preset("tiny", vocab_size=VOCAB, num_layers=1),
                                   num_classes=2)
    classifier.compile(optimizer="sgd", jit_compile=False)
    x, _ = batch()
    dataset = tf.data.Dataset.from_tensor_slices((x, np.array([0, 1, 1, 0]))).batch(BATCH)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        classifier.fit(dataset, verbose=0)
    assert not [w for w in caught if "shuffle" in str(w.message)]


def test_text_apis_refuse_a_bare_string_and_take_empty_lists():
    config = TransformerConfig.from_preset("tiny", vocab_size=256, num_layers=1)
    model = EncoderClassifier(config, num_classes=2, label_names=["no", "yes"],
                              preprocessor=TextPreprocessor(byte_tokenizer(), 8, start_id=1, separator_id=2))
    model.compile(jit_compile=False)
    with pytest.raises(TypeError, match=r"`x` must be a list of texts, got a single str"):
        model.predict_labels("a fine film")
    empty = model.predict_labels([])
    assert empty["labels"] == [] and empty["probabilities"].shape == (0, 2)
    assert model.predict_labels(["a fine film", "no"])["probabilities"].shape == (2, 2)


def test_predict_entities_refuses_strings_where_word_lists_belong():
    from keras_transformers.preprocessing import TaggingPreprocessor
    from keras_transformers.tokenizers import wordpiece_tokenizer

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "eu", "rejects"]
    tagger = EncoderTokenClassifier(
        TransformerConfig.from_preset("tiny", vocab_size=len(vocabulary), num_layers=1), num_classes=3,
        preprocessor=TaggingPreprocessor(wordpiece_tokenizer(vocabulary), 8, start_id=2, separator_id=3,
                                         label_names=["O", "B-ORG", "I-ORG"]))
    for bad in ("EU rejects", ["EU rejects"]):
        with pytest.raises(TypeError, match=r"`sentences` must be a list of word lists"):
            tagger.predict_entities(bad)
    assert tagger.predict_entities([]) == []
