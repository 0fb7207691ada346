"""Task models: output shapes and dtypes, heads computed as documented, argument errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transformers import (
    CausalLM,
    Decoder,
    Encoder,
    EncoderClassifier,
    EncoderTokenClassifier,
    MaskedLM,
    Seq2Seq,
)
from tests.models.helpers import numpy_outputs, pad, tiny_config, token_inputs

# A vocabulary size no other weight dimension has, to find the head's kernel by its shape.
OTHER_VOCAB_SIZE = 50


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
def test_encoder_classifier_gives_float32_logits_per_example(pooling):
    model = EncoderClassifier(tiny_config(), num_classes=3, pooling=pooling)
    logits = model(token_inputs(batch=4, length=6, padding=2))
    assert logits.shape == (4, 3) and logits.dtype == tf.float32


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
def test_encoder_classifier_ignores_appended_padding(pooling):
    model = EncoderClassifier(tiny_config("gpt2_like"), num_classes=3, pooling=pooling)
    inputs = token_inputs(batch=2, length=5, padding=1)
    np.testing.assert_allclose(numpy_outputs(model, pad(inputs, 4)), numpy_outputs(model, inputs),
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
def test_encoder_classifier_pools_as_documented(pooling):
    model = EncoderClassifier(tiny_config(), num_classes=3, pooling=pooling)
    inputs = token_inputs(batch=2, length=6, padding=2)
    logits = numpy_outputs(model, inputs)
    sequence = numpy_outputs(model.backbone, inputs)
    if pooling == "cls":
        pooled = sequence[:, 0]
    elif pooling == "max":
        real = inputs["padding_mask"][..., None].astype(bool)
        assert not real.all()  # the padded rows must not take part
        pooled = np.where(real, sequence, -np.inf).max(1)
    else:
        weights = inputs["padding_mask"][..., None]
        pooled = (sequence * weights).sum(1) / weights.sum(1)
    kernel, bias = (w.numpy() for w in model.classifier.weights)
    np.testing.assert_allclose(logits, pooled @ kernel + bias, rtol=1e-5, atol=1e-5)


def test_encoder_classifier_refuses_an_unknown_pooling():
    with pytest.raises(ValueError, match=r"`pooling` must be one of \('cls', 'mean', 'max'\), got 'sum'"):
        EncoderClassifier(tiny_config(), num_classes=2, pooling="sum")


@pytest.mark.parametrize("model_class", [EncoderClassifier, EncoderTokenClassifier])
def test_classifiers_refuse_fewer_than_one_class(model_class):
    with pytest.raises(ValueError, match=r"`num_classes` must be >= 1, got 0"):
        model_class(tiny_config(), num_classes=0)


def test_token_classifier_gives_float32_logits_per_token():
    logits = EncoderTokenClassifier(tiny_config(), num_classes=5)(token_inputs(batch=2, length=7))
    assert logits.shape == (2, 7, 5) and logits.dtype == tf.float32


def test_masked_lm_head_is_transform_norm_then_the_tied_embedding():
    model = MaskedLM(tiny_config(vocab_size=OTHER_VOCAB_SIZE))
    inputs = token_inputs(batch=2, length=6, vocab_size=OTHER_VOCAB_SIZE)
    logits = numpy_outputs(model, inputs)
    assert logits.shape == (2, 6, OTHER_VOCAB_SIZE) and logits.dtype == np.float32
    # Keras' own exact GELU (the erfc form) as the reference for ops.gelu (the erf form).
    hidden = model.transform_norm(keras.activations.gelu(model.transform(model.backbone(inputs)),
                                                         approximate=False)).numpy()
    embeddings = model.backbone.embeddings.token_embedding.embeddings.numpy()
    np.testing.assert_allclose(logits, hidden @ embeddings.T + model.output_bias.numpy(),
                               rtol=1e-5, atol=1e-5)
    assert not [w for w in model.weights if OTHER_VOCAB_SIZE in w.shape and w is not model.output_bias
                and "token_embedding" not in w.path]


@pytest.mark.parametrize("family,tied", [("gpt2_like", True), ("llama_like", False)])
def test_causal_lm_head_is_tied_or_untied_as_configured(family, tied):
    model = CausalLM(tiny_config(family, vocab_size=OTHER_VOCAB_SIZE))
    inputs = token_inputs(batch=2, length=6, vocab_size=OTHER_VOCAB_SIZE)
    logits = numpy_outputs(model, inputs)
    assert logits.shape == (2, 6, OTHER_VOCAB_SIZE) and logits.dtype == np.float32
    hidden = numpy_outputs(model.backbone, inputs)
    head_kernels = [w for w in model.weights if tuple(w.shape) == (32, OTHER_VOCAB_SIZE)]
    if tied:
        assert head_kernels == []
        projection = model.backbone.embeddings.token_embedding.embeddings.numpy().T
    else:
        (kernel,) = head_kernels
        projection = kernel.numpy()
    np.testing.assert_allclose(logits, hidden @ projection, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tied", [True, False])
def test_seq2seq_head_is_tied_or_untied_as_configured(tied):
    model = Seq2Seq(tiny_config(tie_embeddings=tied, vocab_size=OTHER_VOCAB_SIZE))
    model.build()
    vocab_kernels = [w for w in model.weights if tuple(w.shape) == (32, OTHER_VOCAB_SIZE)]
    assert len(vocab_kernels) == (0 if tied else 1)


@pytest.mark.parametrize("model_class,backbone_class", [
    (EncoderClassifier, Encoder), (EncoderTokenClassifier, Encoder), (MaskedLM, Encoder),
    (CausalLM, Decoder)])
def test_task_model_wraps_a_given_backbone_or_builds_one_from_a_config_or_dict(model_class, backbone_class):
    kwargs = {"num_classes": 2} if "Classifier" in model_class.__name__ else {}
    config = tiny_config()
    backbone = backbone_class(config)
    assert model_class(backbone, **kwargs).backbone is backbone
    assert model_class(config, **kwargs).backbone.config == config
    assert model_class(config.to_dict(), **kwargs).backbone.config == config


def test_a_backbone_that_is_neither_model_nor_config_is_refused():
    with pytest.raises(ValueError, match=r"`config` must be a TransformerConfig or a dict, got str"):
        CausalLM("gpt2_small")


@pytest.mark.parametrize("build,token_level", [
    (lambda c: EncoderClassifier(c, num_classes=2), False),
    (lambda c: EncoderTokenClassifier(c, num_classes=2), True),
    (lambda c: MaskedLM(c), True), (lambda c: CausalLM(c), True), (lambda c: Seq2Seq(c), True)])
def test_per_token_models_weigh_their_tokens(build, token_level):
    assert build(tiny_config()).is_token_level is token_level
