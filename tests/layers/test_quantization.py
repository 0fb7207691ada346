"""Weight-only int8 through Keras' own ``model.quantize("int8")``: the formula per layer, whole
models (every kernel and table int8), saving, generation and the SavedModel export."""

import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transformers import CausalLM, EncoderClassifier, Seq2Seq
from keras_transformers.generation import generate_uncached
from keras_transformers.layers import MixtureOfExperts, MultiHeadAttention, TokenEmbedding
from keras_transformers.layers.quantization import Int8Dense, abs_max_quantize, int8_matmul
from tests.models.helpers import seq2seq_inputs, tiny_config, token_inputs

# Measured on the tiny models below: int8 logits within 0.005 of float32 (logits up to ~0.6).
LOGIT_TOLERANCE = 0.02
FLOAT_VARIABLE_LIMIT = 256  # after quantize, no float32 variable holds more weights than this


def assert_no_plain_dense(model):
    """A plain keras.layers.Dense built inside our layers takes its parent's float policy at
    load, so its int8 file would not load back: our layers build :class:`Int8Dense`."""
    plain = sorted({layer.name for layer in model._flatten_layers() if type(layer) is keras.layers.Dense})
    assert not plain, f"plain keras.layers.Dense in the model ({', '.join(plain)}): use Int8Dense there"


def quantized(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Layer LayerNormalization does not have `quantize`"
        model.quantize("int8")
    return model


def test_abs_max_quantize_is_the_per_row_formula():
    values = np.array([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0], [2.0, 1.0, -0.01]], np.float32)
    q, s = abs_max_quantize(values)
    np.testing.assert_allclose(s, [1.0 / 127, 1.0, 2.0 / 127], rtol=1e-6)
    np.testing.assert_array_equal(q, [[64, -127, 32], [0, 0, 0], [127, 64, -1]])
    assert q.dtype == np.int8 and np.all(np.abs(values - q * s[:, None]) <= s[:, None] / 2 + 1e-7)


@pytest.mark.parametrize("rows", [(1, 1), (2, 3)])  # the one-row matrix-vector form and the general one
def test_int8_matmul_is_x_times_dequantized_kernel_transposed(rows):
    rng = np.random.default_rng(0)
    q = rng.integers(-127, 128, (5, 7)).astype(np.int8)
    s = rng.uniform(0.01, 0.1, 5).astype(np.float32)
    x = rng.normal(size=(*rows, 7)).astype(np.float32)
    y = tf.function(int8_matmul, jit_compile=True)(tf.constant(x), tf.constant(q), tf.constant(s))
    np.testing.assert_allclose(y, x @ (q * s[:, None]).T, rtol=1e-5, atol=1e-5)


def test_int8_matmul_error_is_within_the_rounding_bound():
    """``|x·W - (x·Qᵀ)·s| <= Σ_i |x_i|·s_o/2``: each weight moves by at most half its step."""
    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.05, (16, 9)).astype(np.float32)  # (in, out)
    x = rng.normal(size=(3, 16)).astype(np.float32)
    q, s = abs_max_quantize(w.T)
    error = np.abs(x @ w - int8_matmul(tf.constant(x), tf.constant(q), tf.constant(s)).numpy())
    assert np.all(error <= np.abs(x).sum(-1, keepdims=True) * s / 2 + 1e-6)


@pytest.fixture(scope="module")
def attention():
    layer = MultiHeadAttention(num_heads=4, head_dim=8, num_key_value_heads=2, name="mha")
    x = tf.random.stateless_normal([2, 5, 32], seed=[0, 1])
    layer(x, causal=True)
    for v in layer.weights:  # biases too, so that they count
        v.assign(tf.random.stateless_normal(v.shape, seed=[len(v.path), 2]) * 0.1)
    floats = {n: getattr(layer, f"{n}_kernel").numpy() for n in layer._PROJECTIONS}
    expected = layer(x, causal=True).numpy()
    layer.quantize("int8")
    return layer, x, floats, expected


def test_attention_kernels_are_output_major_int8_with_abs_max_scales(attention):
    layer, _, floats, _ = attention
    assert layer.dtype_policy.name == "int8_from_float32"
    for name in layer._PROJECTIONS:
        # (hidden, heads, dim) -> (hidden, heads*dim); output (heads, dim, hidden) -> (heads*dim, hidden)
        q, s = abs_max_quantize(floats[name].reshape(32, -1).T)
        kernel, scale = getattr(layer, f"{name}_kernel"), getattr(layer, f"{name}_kernel_scale")
        assert kernel.dtype == "int8" and not kernel.trainable and not scale.trainable
        np.testing.assert_array_equal(kernel.numpy(), q)
        np.testing.assert_allclose(scale.numpy(), s, rtol=1e-6)
    assert {v.path.split("/")[-1] for v in layer.trainable_variables} == {
        "query_bias", "key_bias", "value_bias", "output_bias"}


def test_attention_int8_output_is_within_the_rounding_bound(attention):
    layer, x, floats, expected = attention
    got = layer(x, causal=True).numpy()
    # Each weight moves by at most s/2, so |Δ(x·W)| <= Σ|x|·s/2 per projection: a few 1e-3 here.
    assert np.abs(got - expected).max() < 0.02 * np.abs(expected).max()
    np.testing.assert_allclose(got, expected, atol=0.02)


def test_lora_after_int8_and_quantizing_twice_name_the_layer(attention):
    layer = attention[0]
    with pytest.raises(ValueError, match="'mha'.*quantized"):
        layer.enable_lora(2)
    with pytest.raises(ValueError, match="'mha' is already quantized"):
        layer.quantize("int8")


def test_token_embedding_rows_and_tied_head(tmp_path):
    layer = TokenEmbedding(11, 6, name="tokens")
    layer.build()
    table = layer.embeddings.numpy()
    ids = np.array([[0, 3, 10]])
    hidden = np.random.default_rng(0).normal(size=(1, 3, 6)).astype(np.float32)
    float_rows, float_logits = layer(ids).numpy(), layer.project(tf.constant(hidden)).numpy()
    layer.quantize("int8")
    q, s = abs_max_quantize(table)
    np.testing.assert_array_equal(layer.embeddings.numpy(), q)
    np.testing.assert_allclose(layer.embeddings_scale.numpy(), s, rtol=1e-6)
    np.testing.assert_allclose(layer(ids).numpy(), (q * s[:, None])[ids], rtol=1e-6)
    np.testing.assert_allclose(layer(ids).numpy(), float_rows, atol=s.max() / 2 + 1e-7)
    np.testing.assert_allclose(layer.project(tf.constant(hidden)).numpy(), float_logits, atol=0.01)


def test_int8_dense_keeps_dense_layout_until_quantized():
    dense, plain = Int8Dense(5, name="head"), keras.layers.Dense(5)
    dense.build((None, 3)), plain.build((None, 3))
    assert [v.name for v in dense.weights] == [v.name for v in plain.weights]
    kernel = dense.kernel.numpy()
    dense.quantize("int8")
    q, s = abs_max_quantize(kernel.T)
    np.testing.assert_array_equal(dense._kernel.numpy(), q)
    x = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(dense(x).numpy(), x @ (q * s[:, None]).T, rtol=1e-5)
    with pytest.raises(ValueError, match="'head'"):
        dense.enable_lora(2)


def test_mixture_of_experts_kernels_are_int8_per_expert_and_output_channel():
    layer = MixtureOfExperts(6, num_experts=3, experts_per_token=2)
    x = tf.random.stateless_normal([2, 4, 5], seed=[3, 4])
    expected = layer(x).numpy()
    gate = layer.gate_kernel.numpy()  # (E, hidden, inner)
    layer.quantize("int8")
    q, s = abs_max_quantize(gate.transpose(0, 2, 1))
    np.testing.assert_array_equal(layer.gate_kernel.numpy(), q)
    np.testing.assert_allclose(layer.gate_kernel_scale.numpy(), s, rtol=1e-6)
    assert layer.router_kernel.trainable and not layer.gate_kernel.trainable
    np.testing.assert_allclose(layer(x).numpy(), expected, atol=0.02)


MODELS = {
    "gpt2_like": lambda: (CausalLM(tiny_config("gpt2_like")), token_inputs()),  # tied head
    "llama_like": lambda: (CausalLM(tiny_config("llama_like")), token_inputs()),  # untied, RoPE, GQA
    "classifier": lambda: (EncoderClassifier(tiny_config("bert_like"), num_classes=3), token_inputs()),
    "seq2seq": lambda: (Seq2Seq(tiny_config("transformer_like")), seq2seq_inputs()),
    # Mixtral-like: experts instead of FeedForward.
    "moe": lambda: (CausalLM(tiny_config("llama_like", num_experts=4, experts_per_token=2)), token_inputs()),
}


@pytest.fixture(scope="module", params=list(MODELS))
def model_pair(request):
    keras.utils.set_random_seed(0)
    model, inputs = MODELS[request.param]()
    expected = np.asarray(model(inputs))
    return request.param, quantized(model), inputs, expected


def test_quantize_covers_every_kernel_and_table(model_pair):
    _, model, inputs, expected = model_pair
    left = [(v.path, v.shape) for v in model.variables
            if v.dtype == "float32" and np.prod(v.shape) > FLOAT_VARIABLE_LIMIT]
    assert left == []
    assert sum(v.dtype == "int8" for v in model.variables) >= 6
    assert not any(v.dtype == "int8" and v.trainable for v in model.variables)
    np.testing.assert_allclose(np.asarray(model(inputs)), expected, atol=LOGIT_TOLERANCE)


def test_quantized_cached_greedy_equals_uncached_greedy(model_pair):
    name, model, _, _ = model_pair
    if name != "llama_like":
        pytest.skip("one CausalLM: the untied int8 head, RoPE and grouped KV heads over the cache")
    prompts = [[5, 9, 2], [7, 1, 3, 3, 8]]
    outputs = model.generate(prompts, max_new_tokens=6)
    expected = [generate_uncached(model, [p], 6, temperature=0)[0].tolist() for p in prompts]
    got = [row[mask].tolist() for row, mask in zip(outputs["token_ids"], outputs["padding_mask"])]
    assert got == expected


LOAD_AND_RUN = """
import sys, numpy as np, keras
import keras_transformers
model = keras.saving.load_model(sys.argv[1])
inputs = dict(np.load(sys.argv[2]))
assert any(v.dtype == "int8" for v in model.variables)
np.save(sys.argv[3], np.asarray(model(inputs)))
"""


def test_quantized_model_saves_and_loads_with_identical_logits(model_pair, tmp_path):
    """In this process for each model; in a fresh one (``import keras_transformers`` alone)
    for the Llama-like model."""
    name, model, inputs, _ = model_pair
    assert_no_plain_dense(model)
    logits = np.asarray(model(inputs))
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert [(v.shape, v.dtype) for v in loaded.variables] == [(v.shape, v.dtype) for v in model.variables]
    np.testing.assert_array_equal(np.asarray(loaded(inputs)), logits)
    if name == "llama_like":
        np.savez(tmp_path / "inputs.npz", **inputs)
        subprocess.run([sys.executable, "-c", LOAD_AND_RUN, str(tmp_path / "model.keras"),
                        str(tmp_path / "inputs.npz"), str(tmp_path / "logits.npy")],
                       check=True, timeout=300, capture_output=True)
        np.testing.assert_array_equal(np.load(tmp_path / "logits.npy"), logits)


def test_quantized_causal_lm_exports_a_verified_savedmodel(model_pair, tmp_path):
    name, model, _, _ = model_pair
    if name != "gpt2_like":
        pytest.skip("one export")
    from keras_transformers.export.savedmodel import export_savedmodel

    export_savedmodel(model, tmp_path / "serving", verify=True)  # raises unless it reproduces the model


@pytest.mark.slow  # about 30 s: the ONNX files of a CausalLM and their verification
def test_quantized_causal_lm_exports_verified_onnx(model_pair, tmp_path):
    name, model, _, _ = model_pair
    if name != "gpt2_like":
        pytest.skip("one export")
    from keras_transformers.export.onnx import export_onnx

    export_onnx(model, tmp_path / "onnx", verify=True)  # ONNX Runtime against TensorFlow, and generate
