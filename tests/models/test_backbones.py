"""Encoder, Decoder and Seq2Seq: shapes, every family's switches, causality, padding, XLA."""

import numpy as np
import pytest
import tensorflow as tf

from keras_transformers import Decoder, Encoder, Seq2Seq
from keras_transformers.ops import jit_compile_scope
from tests.models.helpers import (
    FAMILIES,
    VOCAB_SIZE,
    numpy_outputs,
    pad,
    seq2seq_inputs,
    tiny_config,
    token_inputs,
)

ALL_FAMILIES = sorted(FAMILIES)
# Segment embeddings only exist on the encoder side; the other families cover every backbone.
CORE_FAMILIES = [family for family in ALL_FAMILIES if family != "segments"]
HIDDEN = 32


def encoder_inputs(family, **kwargs):
    inputs = token_inputs(**kwargs)
    if family == "segments":
        length = inputs["token_ids"].shape[1]
        inputs["segment_ids"] = (np.arange(length) >= length // 2).astype("int32")[None].repeat(
            inputs["token_ids"].shape[0], 0)
    return inputs


# --- shapes and switches ---------------------------------------------------------------------


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_encoder_output_shape(family):
    outputs = Encoder(tiny_config(family))(encoder_inputs(family, batch=2, length=6))
    assert outputs.shape == (2, 6, HIDDEN) and outputs.dtype == tf.float32


@pytest.mark.parametrize("family", CORE_FAMILIES)
def test_decoder_output_shape(family):
    outputs = Decoder(tiny_config(family))(token_inputs(batch=3, length=5))
    assert outputs.shape == (3, 5, HIDDEN) and outputs.dtype == tf.float32


@pytest.mark.parametrize("family", CORE_FAMILIES)
def test_seq2seq_output_is_float32_vocabulary_logits_per_target_position(family):
    model = Seq2Seq(tiny_config(family))
    inputs = seq2seq_inputs(batch=2, source_length=7, target_length=5)
    logits = model(inputs)
    assert logits.shape == (2, 5, VOCAB_SIZE) and logits.dtype == tf.float32
    source = {key: value for key, value in inputs.items() if key.startswith("encoder_")}
    assert model.encode(source).shape == (2, 7, HIDDEN)


def test_segment_ids_change_the_output_and_default_to_zeros():
    encoder = Encoder(tiny_config("segments"))
    inputs = token_inputs(batch=2, length=6)
    without = numpy_outputs(encoder, inputs)
    zeros = numpy_outputs(encoder, {**inputs, "segment_ids": np.zeros((2, 6), "int32")})
    ones = numpy_outputs(encoder, {**inputs, "segment_ids": np.ones((2, 6), "int32")})
    np.testing.assert_array_equal(without, zeros)
    assert np.abs(ones - zeros).max() > 1e-3


def test_llama_like_switches_reach_the_layers():
    decoder = Decoder(tiny_config("llama_like"))
    decoder(token_inputs())
    attention = decoder.blocks[0].self_attention
    assert tuple(attention.query_kernel.shape) == (HIDDEN, 4, 8)
    assert tuple(attention.key_kernel.shape) == (HIDDEN, 2, 8)  # grouped-query: 2 KV heads
    assert attention.rotary is not None and decoder.embeddings.position_embedding is None
    assert type(decoder.final_norm).__name__ == "RMSNorm"
    assert decoder.blocks[0].feedforward.gate_proj is not None  # SwiGLU
    assert not [w.path for w in decoder.weights if "bias" in w.path or "beta" in w.path]


def test_transformer_like_switches_reach_the_layers():
    encoder = Encoder(tiny_config("transformer_like"))
    encoder(token_inputs())
    assert type(encoder.embeddings.position_embedding).__name__ == "SinusoidalPositionEncoding"
    assert encoder.embeddings.token_embedding.scale == pytest.approx(HIDDEN ** 0.5)
    assert encoder.blocks[0].feedforward.activation == "relu"
    assert encoder.blocks[0].norm_first is False


def test_gpt2_like_switches_reach_the_layers():
    decoder = Decoder(tiny_config("gpt2_like"))
    decoder(token_inputs())
    block = decoder.blocks[0]
    assert (block.norm_first, block.feedforward.activation) == (True, "gelu_approximate")
    assert type(decoder.embeddings.position_embedding).__name__ == "PositionEmbedding"
    assert block.self_attention.rotary is None


@pytest.mark.parametrize("family,final_norm,embedding_norm", [
    ("bert_like", False, True), ("gpt2_like", True, False), ("transformer_like", False, False)])
def test_norm_placement_follows_the_config(family, final_norm, embedding_norm):
    encoder = Encoder(tiny_config(family))
    assert (encoder.final_norm is not None, encoder.embeddings.norm is not None) == (final_norm,
                                                                                      embedding_norm)


def test_seq2seq_shares_one_token_embedding_and_honours_num_decoder_layers():
    model = Seq2Seq(tiny_config("bert_like", num_layers=1, num_decoder_layers=3))
    model(seq2seq_inputs())
    assert (len(model.encoder.blocks), len(model.decoder.blocks)) == (1, 3)
    assert (model.decoder.embeddings.token_embedding.embeddings
            is model.encoder.embeddings.token_embedding.embeddings)
    embeddings = [w for w in model.weights if w.path.endswith("token_embedding/embeddings")]
    assert len(embeddings) == 1


def test_dropout_is_active_only_in_training():
    encoder = Encoder(tiny_config("bert_like", dropout=0.5, attention_dropout=0.5))
    inputs = token_inputs()
    np.testing.assert_array_equal(numpy_outputs(encoder, inputs), numpy_outputs(encoder, inputs))
    assert not np.allclose(numpy_outputs(encoder, inputs, training=True),
                           numpy_outputs(encoder, inputs, training=True))


# --- causality -------------------------------------------------------------------------------


def change_after(ids, t, seed=1):
    changed = ids.copy()
    changed[:, t + 1:] = np.random.default_rng(seed).integers(1, VOCAB_SIZE, changed[:, t + 1:].shape)
    assert (changed[:, t + 1:] != ids[:, t + 1:]).any(axis=0).all()
    return changed


def assert_causal(before, after, t):
    np.testing.assert_allclose(after[:, : t + 1], before[:, : t + 1], rtol=0, atol=1e-6)
    change_per_position = np.abs(after - before).max(axis=(0, 2))
    assert (change_per_position[t + 1:] > 1e-4).all(), change_per_position


@pytest.mark.parametrize("family", CORE_FAMILIES)
def test_decoder_position_t_ignores_later_tokens(family):
    decoder, t = Decoder(tiny_config(family)), 2
    inputs = token_inputs(batch=2, length=7)
    before = numpy_outputs(decoder, inputs)
    after = numpy_outputs(decoder, {**inputs, "token_ids": change_after(inputs["token_ids"], t)})
    assert_causal(before, after, t)


@pytest.mark.parametrize("family", CORE_FAMILIES)
def test_seq2seq_decoder_position_t_ignores_later_target_tokens(family):
    model, t = Seq2Seq(tiny_config(family)), 1
    inputs = seq2seq_inputs(source_length=6, target_length=5)
    before = numpy_outputs(model, inputs)
    changed = change_after(inputs["decoder_token_ids"], t)
    after = numpy_outputs(model, {**inputs, "decoder_token_ids": changed})
    assert_causal(before, after, t)


def test_seq2seq_every_target_position_sees_the_whole_source():
    model = Seq2Seq(tiny_config())
    inputs = seq2seq_inputs(source_length=6, target_length=4)
    source = inputs["encoder_token_ids"].copy()
    source[:, -1] = (source[:, -1] % (VOCAB_SIZE - 1)) + 1
    change = np.abs(numpy_outputs(model, {**inputs, "encoder_token_ids": source})
                    - numpy_outputs(model, inputs)).max(axis=(0, 2))
    assert (change > 1e-4).all(), change


# --- padding ---------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_encoder_outputs_at_real_positions_ignore_appended_padding(family):
    encoder = Encoder(tiny_config(family))
    inputs = encoder_inputs(family, batch=2, length=6)
    inputs["token_ids"][1, 4:], inputs["padding_mask"][1, 4:] = 0, 0  # row 1 already padded
    padded = pad(inputs, 5)
    if family == "segments":
        padded["segment_ids"] = np.pad(inputs["segment_ids"], [(0, 0), (0, 5)])
    real = inputs["padding_mask"].astype(bool)
    before, after = numpy_outputs(encoder, inputs), numpy_outputs(encoder, padded)
    np.testing.assert_allclose(after[:, :6][real], before[real], rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", CORE_FAMILIES)
def test_encoder_padding_mask_not_the_token_id_decides_what_is_padding(family):
    encoder = Encoder(tiny_config(family))
    inputs = token_inputs(batch=2, length=8, padding=3)
    noisy = dict(inputs, token_ids=inputs["token_ids"].copy())
    noisy["token_ids"][:, 5:] = [[7, 8, 9], [60, 61, 62]]  # garbage ids under padding_mask 0
    np.testing.assert_allclose(numpy_outputs(encoder, noisy)[:, :5], numpy_outputs(encoder, inputs)[:, :5],
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", CORE_FAMILIES)
def test_seq2seq_logits_ignore_extra_source_padding(family):
    model = Seq2Seq(tiny_config(family))
    inputs = seq2seq_inputs(source_length=6, target_length=5)
    inputs["encoder_token_ids"][0, 3:], inputs["encoder_padding_mask"][0, 3:] = 0, 0
    before = numpy_outputs(model, inputs)
    after = numpy_outputs(model, pad(inputs, 4, prefix="encoder_"))
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", CORE_FAMILIES)
def test_seq2seq_logits_at_real_target_positions_ignore_target_padding(family):
    model = Seq2Seq(tiny_config(family))
    inputs = seq2seq_inputs(source_length=6, target_length=4)
    after = numpy_outputs(model, pad(inputs, 3, prefix="decoder_"))
    np.testing.assert_allclose(after[:, :4], numpy_outputs(model, inputs), rtol=0, atol=1e-5)


# --- XLA and non-XLA traces agree ------------------------------------------------------------


def run_four_ways(model, inputs):
    """Outputs eagerly and inside tf.function, each with the attention core XLA-compiled or not."""
    results = {}
    for jit in (True, False):
        with jit_compile_scope(jit):
            results[f"eager-xla={jit}"] = numpy_outputs(model, inputs)
            graph = tf.function(lambda x: model(x))  # a fresh trace under this scope
            results[f"graph-xla={jit}"] = graph(inputs).numpy()
    return results


@pytest.mark.parametrize("model_class,family", [
    (Encoder, "bert_like"), (Encoder, "llama_like"), (Decoder, "gpt2_like"), (Decoder, "llama_like"),
    (Seq2Seq, "transformer_like")])
def test_xla_and_non_xla_traces_give_the_same_numbers(model_class, family):
    model = model_class(tiny_config(family))
    if model_class is Seq2Seq:
        inputs = seq2seq_inputs(source_length=7, target_length=5, source_padding=2, target_padding=1)
    else:
        inputs = token_inputs(batch=2, length=7, padding=2)
    results = run_four_ways(model, inputs)
    reference = results.pop("eager-xla=True")
    for name, outputs in results.items():
        np.testing.assert_allclose(outputs, reference, rtol=0, atol=1e-5, err_msg=name)


def xla_marked_calls(model, inputs, jit):
    with jit_compile_scope(jit):
        concrete = tf.function(lambda x: model(x)).get_concrete_function(inputs)
    graph = concrete.graph.as_graph_def()
    nodes = list(graph.node) + [node for function in graph.library.function for node in function.node_def]
    return [node.name for node in nodes if node.attr["_XlaMustCompile"].b]


@pytest.mark.parametrize("model_class", [Encoder, Decoder])
def test_jit_compile_scope_false_traces_a_model_without_xla(model_class):
    model, inputs = model_class(tiny_config()), token_inputs()
    assert xla_marked_calls(model, inputs, jit=True)  # the attention core, compiled
    assert xla_marked_calls(model, inputs, jit=False) == []
