"""Task models learn small synthetic tasks with ``fit``; padding never counts; mixed precision."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transformers import (
    CausalLM,
    EncoderClassifier,
    EncoderTokenClassifier,
    MaskedLM,
    Seq2Seq,
)
from keras_transformers.ops.matmul import TWO_ROW_MIN_KERNEL_SIZE
from tests.models.helpers import (
    VOCAB_SIZE,
    repeat_dataset,
    seq2seq_inputs,
    tiny_config,
    token_inputs,
    weighted_loss_and_accuracy,
)

# --- synthetic tasks -------------------------------------------------------------------------
# Each returns (x, y) as NumPy; ``rng`` makes training and held-out data differ.


def padded_lengths(rng, count, low, high, odd=False):
    lengths = rng.integers(low, high + 1, size=count)
    return lengths | 1 if odd else lengths  # odd lengths: no ties in a majority vote


def mask_from_lengths(lengths, length):
    return (np.arange(length)[None] < lengths[:, None]).astype("int32")


def majority_task(rng, count=512, length=9, a=3, b=4):
    """Sequences of tokens a and b (odd real lengths, padded); label 1 when b is the majority."""
    mask = mask_from_lengths(padded_lengths(rng, count, 3, length, odd=True), length)
    ids = np.where(rng.random((count, length)) < rng.random((count, 1)), a, b) * mask
    labels = ((ids == b).sum(1) > (ids == a).sum(1)).astype("int32")
    return {"token_ids": ids.astype("int32"), "padding_mask": mask}, labels


def parity_task(rng, count=512, length=10):
    """Tag each token with its id's parity; padded positions carry garbage labels."""
    mask = mask_from_lengths(padded_lengths(rng, count, 2, length), length)
    ids = rng.integers(1, VOCAB_SIZE, size=(count, length)) * mask
    labels = np.where(mask == 1, ids % 2, rng.integers(-100, 100, size=ids.shape))
    return {"token_ids": ids.astype("int32"), "padding_mask": mask}, labels.astype("int32")


def counting_task(rng, count=512, length=8, vocab_size=VOCAB_SIZE):
    """``a, a+1, a+2, ... (mod vocab_size)``; labels are the next token."""
    sequences = (rng.integers(0, vocab_size, size=(count, 1)) + np.arange(length + 1)) % vocab_size
    inputs = {"token_ids": sequences[:, :-1].astype("int32"),
              "padding_mask": np.ones((count, length), "int32")}
    return inputs, sequences[:, 1:].astype("int32")


START, MASK, FIRST_WORD = 1, 2, 3


def reversal_task(rng, count=512, length=6):
    """Target = source reversed; the decoder reads the target shifted right after a start token."""
    source = rng.integers(FIRST_WORD, 16, size=(count, length))
    target = source[:, ::-1]
    decoder_ids = np.concatenate([np.full((count, 1), START), target[:, :-1]], axis=1)
    ones = np.ones((count, length), "int32")
    inputs = {"encoder_token_ids": source.astype("int32"), "encoder_padding_mask": ones,
              "decoder_token_ids": decoder_ids.astype("int32"), "decoder_padding_mask": ones}
    return inputs, target.astype("int32")


def masked_repeat_task(rng, count=512, length=8):
    """One token repeated, with one position replaced by MASK; labels -100 except there."""
    sequences = rng.integers(FIRST_WORD, VOCAB_SIZE, size=(count, 1)).repeat(length, axis=1)
    is_masked = np.arange(length)[None] == rng.integers(0, length, size=(count, 1))
    inputs = {"token_ids": np.where(is_masked, MASK, sequences).astype("int32"),
              "padding_mask": np.ones((count, length), "int32")}
    return inputs, np.where(is_masked, sequences, -100).astype("int32")


def fit_and_evaluate(model, task, steps, learning_rate=3e-3, jit_compile=False):
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), jit_compile=jit_compile)
    x, y = task(np.random.default_rng(1))
    model.fit(repeat_dataset(x, y), steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)
    held_out_x, held_out_y = task(np.random.default_rng(2), count=256)
    return model.evaluate(held_out_x, held_out_y, batch_size=64, verbose=0, return_dict=True)


# --- learning --------------------------------------------------------------------------------


def test_encoder_classifier_learns_which_token_is_the_majority():
    model = EncoderClassifier(tiny_config(), num_classes=2, pooling="mean", dropout=0.0)
    results = fit_and_evaluate(model, majority_task, steps=50)
    assert results["accuracy"] >= 0.9, results


def test_layers_wide_enough_for_the_one_row_forms_train_under_xla_with_the_batch_unknown():
    # Kernels of >= TWO_ROW_MIN_KERNEL_SIZE weights take keras_transformers.ops.matmul's tf.cond
    # when the batch is unknown while tracing (a dataset without drop_remainder): fit
    # differentiates both branches under XLA. The tiny preset's kernels are below that size.
    config = tiny_config(hidden_size=64, intermediate_size=128)
    assert 64 * 64 >= TWO_ROW_MIN_KERNEL_SIZE
    model = EncoderClassifier(config, num_classes=2, pooling="mean", dropout=0.0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=True)
    x, y = majority_task(np.random.default_rng(1))
    train = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(48)
    assert train.element_spec[1].shape[0] is None
    model.fit(train, steps_per_epoch=50, epochs=1, verbose=0)
    held_out_x, held_out_y = majority_task(np.random.default_rng(2), count=256)
    assert model.evaluate(held_out_x, held_out_y, batch_size=64, verbose=0,
                          return_dict=True)["accuracy"] >= 0.9


def test_token_classifier_learns_the_parity_of_each_token():
    model = EncoderTokenClassifier(tiny_config(), num_classes=2, dropout=0.0)
    results = fit_and_evaluate(model, parity_task, steps=50)
    assert results["accuracy"] >= 0.95, results


def test_causal_lm_learns_a_counting_language():
    model = CausalLM(tiny_config("gpt2_like"))
    results = fit_and_evaluate(model, counting_task, steps=60, jit_compile=True)
    assert results["accuracy"] >= 0.9, results


def test_llama_like_causal_lm_learns_a_counting_language():
    model = CausalLM(tiny_config("llama_like"))
    results = fit_and_evaluate(model, counting_task, steps=40)
    assert results["accuracy"] >= 0.9, results


def test_seq2seq_learns_to_reverse_a_sequence():
    model = Seq2Seq(tiny_config("transformer_like", vocab_size=16))
    results = fit_and_evaluate(model, reversal_task, steps=175)
    assert results["accuracy"] >= 0.9, results


def test_masked_lm_recovers_a_masked_repeated_token():
    model = MaskedLM(tiny_config())
    results = fit_and_evaluate(model, masked_repeat_task, steps=175)
    assert results["accuracy"] >= 0.8, results


# --- padding and ignored labels never count --------------------------------------------------


def labels_with_accuracy_about_half(logits, rng):
    """Labels that equal the model's prediction at about half of the positions."""
    predicted = logits.argmax(-1)
    wrong = (predicted + rng.integers(1, logits.shape[-1], size=predicted.shape)) % logits.shape[-1]
    return np.where(rng.random(predicted.shape) < 0.5, predicted, wrong)


def garbage_at(labels, logits, where, kind):
    """``labels`` with garbage where ``where``: the prediction (counts as correct if read) or an
    id no softmax has (breaks the loss if read)."""
    garbage = logits.argmax(-1) if kind == "prediction" else np.full_like(labels, VOCAB_SIZE + 7)
    return np.where(where, garbage, labels)


TOKEN_LEVEL = {
    "CausalLM": (lambda: CausalLM(tiny_config("gpt2_like")), "padding_mask",
                 lambda: token_inputs(batch=4, length=7)),
    "EncoderTokenClassifier": (lambda: EncoderTokenClassifier(tiny_config(), num_classes=5),
                               "padding_mask", lambda: token_inputs(batch=4, length=7)),
    "Seq2Seq": (lambda: Seq2Seq(tiny_config()), "decoder_padding_mask",
                lambda: seq2seq_inputs(batch=4, source_length=6, target_length=7, source_padding=1)),
}


def padded(inputs, mask_key):
    inputs = {key: value.copy() for key, value in inputs.items()}
    lengths = np.array([7, 5, 3, 6])
    inputs[mask_key] = mask_from_lengths(lengths, 7)
    inputs[mask_key.replace("padding_mask", "token_ids")] *= inputs[mask_key]
    return inputs


def padded_case(name, garbage):
    """A token-level model, padded inputs, its logits, the real positions, labels about half
    right, and those labels with ``garbage`` at the padded positions."""
    build, mask_key, make_inputs = TOKEN_LEVEL[name]
    model = build()
    x = padded(make_inputs(), mask_key)
    logits = model(x).numpy()
    real = x[mask_key] == 1
    labels = labels_with_accuracy_about_half(logits, np.random.default_rng(0))
    return model, x, logits, real, labels, garbage_at(labels, logits, ~real, garbage)


@pytest.mark.parametrize("name,jit_compile", [(name, False) for name in sorted(TOKEN_LEVEL)]
                         + [("CausalLM", True)])
@pytest.mark.parametrize("garbage", ["prediction", "out_of_vocabulary"])
def test_evaluate_counts_real_tokens_only(name, jit_compile, garbage):
    model, x, logits, real, labels, y = padded_case(name, garbage)
    model.compile(jit_compile=jit_compile)  # loss and metrics "auto"
    results = model.evaluate(x, y, batch_size=len(y), verbose=0, return_dict=True)
    loss, accuracy = weighted_loss_and_accuracy(logits, labels, real)
    assert 0.2 < accuracy < 0.8
    np.testing.assert_allclose([results["loss"], results["accuracy"]], [loss, accuracy], rtol=1e-5)


@pytest.mark.parametrize("name", sorted(TOKEN_LEVEL))
def test_explicit_metrics_are_still_weighted_by_padding(name):
    model, x, logits, real, labels, y = padded_case(name, "prediction")
    model.compile(optimizer="adam", metrics=[keras.metrics.SparseCategoricalAccuracy()], jit_compile=False)
    results = model.evaluate(x, y, batch_size=len(y), verbose=0, return_dict=True)
    _, accuracy = weighted_loss_and_accuracy(logits, labels, real)
    np.testing.assert_allclose(results["sparse_categorical_accuracy"], accuracy, rtol=1e-6)


@pytest.mark.parametrize("build", [
    lambda: EncoderTokenClassifier(tiny_config(), num_classes=5), lambda: MaskedLM(tiny_config())],
    ids=["EncoderTokenClassifier", "MaskedLM"])
def test_labels_of_minus_100_are_ignored(build):
    model = build()
    x = padded(token_inputs(batch=4, length=7), "padding_mask")
    logits = model(x).numpy()
    rng = np.random.default_rng(0)
    labels = labels_with_accuracy_about_half(logits, rng)
    ignored = rng.random(labels.shape) < 0.4
    counted = (x["padding_mask"] == 1) & ~ignored
    y = np.where(ignored, -100, garbage_at(labels, logits, x["padding_mask"] == 0, "prediction"))
    model.compile(jit_compile=False)
    results = model.evaluate(x, y, batch_size=len(y), verbose=0, return_dict=True)
    loss, accuracy = weighted_loss_and_accuracy(logits, labels, counted)
    np.testing.assert_allclose([results["loss"], results["accuracy"]], [loss, accuracy], rtol=1e-5)


def test_per_example_sample_weights_multiply_the_token_weights():
    model = CausalLM(tiny_config())
    x = padded(token_inputs(batch=4, length=7), "padding_mask")
    logits = model(x).numpy()
    labels = labels_with_accuracy_about_half(logits, np.random.default_rng(0))
    sample_weight = np.array([1.0, 0.0, 2.0, 0.5])
    model.compile(jit_compile=False)
    results = model.evaluate(x, labels, sample_weight=sample_weight, batch_size=4, verbose=0,
                             return_dict=True)
    weights = x["padding_mask"] * sample_weight[:, None]
    nll = -np.take_along_axis(np.log(tf.nn.softmax(logits.astype("float64")).numpy()),
                              labels[..., None], -1)[..., 0]
    correct = logits.argmax(-1) == labels
    np.testing.assert_allclose(
        [results["loss"], results["accuracy"]],
        [(nll * weights).sum() / weights.sum(), (correct * weights).sum() / weights.sum()], rtol=1e-5)


def test_classifier_evaluate_averages_over_examples():
    # A per-example model gets no token weights: its (batch,) labels all count.
    model = EncoderClassifier(tiny_config(), num_classes=2, pooling="mean")
    x, y = majority_task(np.random.default_rng(0), count=8)
    model.compile(jit_compile=False)
    results = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    logits = model(x).numpy()
    loss, accuracy = weighted_loss_and_accuracy(logits, y, np.ones_like(y))
    np.testing.assert_allclose([results["loss"], results["accuracy"]], [loss, accuracy], rtol=1e-5)


# --- mixed precision -------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["gpt2_like", "llama_like"])
def test_causal_lm_trains_in_mixed_bfloat16(family):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = CausalLM(tiny_config(family))
    x, y = counting_task(np.random.default_rng(0), count=64)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert model.compute_dtype == "bfloat16" and model.backbone.compute_dtype == "bfloat16"
    assert model(x).dtype == tf.float32
    assert model.backbone(x).dtype == tf.bfloat16
    assert {variable.dtype for variable in model.trainable_variables} == {"float32"}
    assert not [v.path for v in model.variables if v.dtype in ("bfloat16", "float16")]
