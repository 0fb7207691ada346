"""Wrong inputs raise a ValueError naming the argument, the value and the limit."""

import numpy as np
import pytest
import tensorflow as tf

from keras_transformers import CausalLM, Decoder, Encoder, EncoderClassifier, MaskedLM, Seq2Seq
from tests.models.helpers import MAX_LENGTH, VOCAB_SIZE, seq2seq_inputs, tiny_config, token_inputs

# (model, prefix of the token_ids / padding_mask pair under test)
TARGETS = [("Encoder", ""), ("Decoder", ""), ("Seq2Seq", "encoder_"), ("Seq2Seq", "decoder_")]
TARGET_IDS = ["Encoder", "Decoder", "Seq2Seq-encoder", "Seq2Seq-decoder"]
MODEL_NAMES = ["Encoder", "Decoder", "Seq2Seq"]


@pytest.fixture(scope="module")
def models():
    config = tiny_config()
    return {"Encoder": Encoder(config), "Decoder": Decoder(config), "Seq2Seq": Seq2Seq(config)}


def valid_inputs(model_name, batch=2, length=5):
    if model_name == "Seq2Seq":
        return seq2seq_inputs(batch, length, length)
    return token_inputs(batch, length)


def with_pair(model_name, prefix, ids=None, mask=None):
    """Valid inputs whose ``{prefix}token_ids`` / ``{prefix}padding_mask`` are replaced."""
    inputs = valid_inputs(model_name)
    if ids is not None:
        inputs[f"{prefix}token_ids"] = ids
    if mask is not None:
        inputs[f"{prefix}padding_mask"] = mask
    return inputs


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_valid_inputs_are_accepted(models, model_name):
    assert models[model_name](valid_inputs(model_name)).shape[:2] == (2, 5)


@pytest.mark.parametrize("model_name,prefix", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("name", ["token_ids", "padding_mask"])
def test_missing_key_is_named(models, model_name, prefix, name):
    inputs = valid_inputs(model_name)
    del inputs[prefix + name]
    with pytest.raises(ValueError, match=rf"{model_name} is missing input key\(s\) '{prefix}{name}'"):
        models[model_name](inputs)


@pytest.mark.parametrize("model_name,prefix", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("typo,name", [("padding_maks", "padding_mask"), ("token_id", "token_ids")])
def test_misspelled_key_suggests_the_right_one(models, model_name, prefix, typo, name):
    inputs = valid_inputs(model_name)
    inputs[prefix + typo] = inputs.pop(prefix + name)
    with pytest.raises(ValueError, match=rf"Unexpected input key '{prefix}{typo}'\. "
                                         rf"Did you mean '{prefix}{name}'\?"):
        models[model_name](inputs)


@pytest.mark.parametrize("model_name", MODEL_NAMES)
@pytest.mark.parametrize("make", [lambda inputs: next(iter(inputs.values())),
                                  lambda inputs: list(inputs.values())], ids=["tensor", "list"])
def test_non_dict_input_is_refused(models, model_name, make):
    with pytest.raises(ValueError, match=rf"{model_name} expects a dict of tensors with keys "
                                         rf"\w*token_ids, \w*padding_mask.*; got "):
        models[model_name](make(valid_inputs(model_name)))


@pytest.mark.parametrize("model_name,prefix", TARGETS, ids=TARGET_IDS)
def test_sequence_longer_than_max_length_names_the_length_and_the_limit(models, model_name, prefix):
    too_long = token_inputs(2, MAX_LENGTH + 1)
    inputs = with_pair(model_name, prefix, too_long["token_ids"], too_long["padding_mask"])
    with pytest.raises(ValueError, match=rf"`{prefix}token_ids` has sequence length {MAX_LENGTH + 1}, "
                                         rf"longer than max_length={MAX_LENGTH}"):
        models[model_name](inputs)


@pytest.mark.parametrize("model_name,prefix", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("bad_id", [VOCAB_SIZE, 1000, -1])
def test_token_id_outside_the_vocabulary_names_the_id_and_vocab_size(models, model_name, prefix, bad_id):
    ids = valid_inputs(model_name)[f"{prefix}token_ids"].copy()
    ids[1, 2] = bad_id
    with pytest.raises(ValueError, match=rf"`{prefix}token_ids` holds id {bad_id}, outside the "
                                         rf"vocabulary \[0, vocab_size={VOCAB_SIZE}\)"):
        models[model_name](with_pair(model_name, prefix, ids=ids))


@pytest.mark.parametrize("model_name,prefix", TARGETS, ids=TARGET_IDS)
def test_float_token_ids_are_refused(models, model_name, prefix):
    ids = valid_inputs(model_name)[f"{prefix}token_ids"].astype("float32")
    with pytest.raises(ValueError, match=rf"`{prefix}token_ids` must be an integer tensor, got dtype float32"):
        models[model_name](with_pair(model_name, prefix, ids=ids))


@pytest.mark.parametrize("model_name,prefix", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("shape", [(2, 5, 3), (5,)])
def test_token_ids_of_wrong_rank_are_refused(models, model_name, prefix, shape):
    ids = np.ones(shape, "int32")
    with pytest.raises(ValueError, match=rf"`{prefix}token_ids` must have shape \(batch, seq\), got shape "
                                         rf"\({', '.join(map(str, shape))},?\) \(rank {len(shape)}\)"):
        models[model_name](with_pair(model_name, prefix, ids=ids))


@pytest.mark.parametrize("model_name,prefix", TARGETS, ids=TARGET_IDS)
def test_padding_mask_shape_must_match_token_ids(models, model_name, prefix):
    mask = np.ones((2, 4), "int32")
    with pytest.raises(ValueError, match=rf"`{prefix}padding_mask` must have the shape of "
                                         rf"`{prefix}token_ids` \(2, 5\), got \(2, 4\)"):
        models[model_name](with_pair(model_name, prefix, mask=mask))


@pytest.mark.parametrize("model_name,prefix", TARGETS, ids=TARGET_IDS)
def test_empty_batch_is_refused(models, model_name, prefix):
    empty = token_inputs(2, 5)
    inputs = with_pair(model_name, prefix, empty["token_ids"][:0], empty["padding_mask"][:0])
    with pytest.raises(ValueError, match=rf"`{prefix}token_ids` is an empty batch \(batch size 0\)"):
        models[model_name](inputs)


def test_segment_ids_outside_type_vocab_size_are_named():
    encoder = Encoder(tiny_config("segments"))
    inputs = {**token_inputs(2, 5), "segment_ids": np.full((2, 5), 2, "int32")}
    with pytest.raises(ValueError, match=r"`segment_ids` holds id 2, outside the vocabulary "
                                         r"\[0, type_vocab_size=2\)"):
        encoder(inputs)


def test_segment_ids_shape_must_match_token_ids():
    encoder = Encoder(tiny_config("segments"))
    inputs = {**token_inputs(2, 5), "segment_ids": np.zeros((2, 6), "int32")}
    with pytest.raises(ValueError, match=r"`segment_ids` must have the shape of `token_ids` \(2, 5\), got \(2, 6\)"):
        encoder(inputs)


def test_segment_ids_are_refused_by_an_encoder_without_segments(models):
    inputs = {**token_inputs(2, 5), "segment_ids": np.zeros((2, 5), "int32")}
    with pytest.raises(ValueError, match=r"Unexpected input key 'segment_ids'\..* Expected keys: "
                                         r"token_ids, padding_mask\."):
        models["Encoder"](inputs)


def test_in_a_graph_a_dynamic_length_over_max_length_fails_when_run(models):
    spec = {"token_ids": tf.TensorSpec([None, None], tf.int32),
            "padding_mask": tf.TensorSpec([None, None], tf.int32)}
    run = tf.function(models["Encoder"], input_signature=[spec])
    assert run(token_inputs(2, MAX_LENGTH)).shape == (2, MAX_LENGTH, 32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"`token_ids` is longer than max_length={MAX_LENGTH}"):
        run(token_inputs(2, MAX_LENGTH + 1))


def test_in_a_graph_an_id_outside_the_vocabulary_fails_when_run(models):
    spec = {"token_ids": tf.TensorSpec([None, None], tf.int32),
            "padding_mask": tf.TensorSpec([None, None], tf.int32)}
    run = tf.function(models["Encoder"], input_signature=[spec])
    inputs = token_inputs(2, 5)
    inputs["token_ids"][0, 0] = VOCAB_SIZE
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=rf"outside the vocabulary \[0, vocab_size={VOCAB_SIZE}\)"):
        run(inputs)


@pytest.mark.parametrize("build", [
    lambda config: EncoderClassifier(config, num_classes=2),
    lambda config: MaskedLM(config),
    lambda config: CausalLM(config),
], ids=["EncoderClassifier", "MaskedLM", "CausalLM"])
def test_task_models_pass_input_errors_through(build):
    model = build(tiny_config())
    inputs = token_inputs(2, 5)
    inputs["padding_maks"] = inputs.pop("padding_mask")
    with pytest.raises(ValueError, match=r"Unexpected input key 'padding_maks'\. Did you mean 'padding_mask'\?"):
        model(inputs)


def test_seq2seq_source_and_target_batches_must_have_the_same_size(models):
    inputs = {**seq2seq_inputs(batch=2), **{key: value for key, value in seq2seq_inputs(batch=3).items()
                                           if key.startswith("decoder_")}}
    with pytest.raises(ValueError, match=r"All inputs must have the same batch size, got 2 for "
                                         r"`encoder_token_ids`, .*3 for `decoder_token_ids`"):
        models["Seq2Seq"](inputs)
