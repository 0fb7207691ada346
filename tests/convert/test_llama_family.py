"""Llama 3.x (RoPE scaling, both config layouts), Mistral (sliding window), Qwen2 (q/k/v
biases) and Mixtral (mixture of experts) imports, against numbers computed once with transformers 5.24
(``make_llama_family_reference.py``; these tests need no torch)."""

import json
import pathlib
import shutil

import numpy as np
import pytest

from keras_transformers import CausalLM, TransformerConfig
from keras_transformers.convert import CheckpointError, from_huggingface
from keras_transformers.convert.llama_family import llama_family_config, rope_settings
from keras_transformers.convert.reader import _Config
from keras_transformers.generation import generate_uncached
from keras_transformers.layers import RotaryEmbedding

HERE = pathlib.Path(__file__).parent

# Published config.json files (meta-llama/Llama-3.1-8B, mistralai/Mistral-7B-v0.1, Qwen/Qwen2-0.5B,
# mistralai/Mixtral-8x7B-v0.1).
LLAMA_3_1_8B = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama", "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.43.0.dev0", "use_cache": True, "vocab_size": 128256}
MISTRAL_7B = {
    "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 32768, "model_type": "mistral", "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
    "sliding_window": 4096, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.34.0.dev0", "use_cache": True, "vocab_size": 32000}
QWEN2_0_5B = {
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
    "intermediate_size": 4864, "max_position_embeddings": 131072, "max_window_layers": 24,
    "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 131072, "tie_word_embeddings": True,
    "torch_dtype": "bfloat16", "transformers_version": "4.40.1", "use_cache": True,
    "use_sliding_window": False, "vocab_size": 151936}
MIXTRAL_8X7B = {
    "architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 32768, "model_type": "mixtral", "num_attention_heads": 32,
    "num_experts_per_tok": 2, "num_hidden_layers": 32, "num_key_value_heads": 8, "num_local_experts": 8,
    "output_router_logits": False, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.02,
    "sliding_window": None, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.36.0.dev0", "use_cache": True, "vocab_size": 32000}


def mapped(values):
    return llama_family_config(_Config(values, "config.json"), values["model_type"])


def checkpoint_with_config(tmp_path, name, config):
    shutil.copy(HERE / name / "model.safetensors", tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


@pytest.fixture(scope="module", params=["tiny_llama3", "tiny_llama3-transformers5", "tiny_mistral", "tiny_qwen2",
                                                "tiny_mixtral", "tiny_llama_head_dim"])
def imported(request, tmp_path_factory):
    name, _, layout = request.param.partition("-")
    path = HERE / name
    if layout:  # the same weights, with the config.json transformers 5 writes
        config = json.loads((HERE / "tiny_llama3_transformers5_config.json").read_text())
        assert "rope_parameters" in config and "rope_scaling" not in config
        path = checkpoint_with_config(tmp_path_factory.mktemp(request.param), name, config)
    model, tokenizer = from_huggingface(path)
    return request.param, model, np.load(HERE / f"{name}_expected.npz")


def test_logits_and_cached_greedy_continuation_match_transformers(imported):
    name, model, reference = imported
    assert isinstance(model, CausalLM)
    ids = reference["token_ids"]
    logits = model({"token_ids": ids, "padding_mask": np.ones_like(ids)}).numpy()
    np.testing.assert_allclose(logits, reference["logits"], atol=1e-4)
    if name.endswith("-transformers5"):  # the same config as the published layout's: no need to generate
        assert model.config == from_huggingface(HERE / "tiny_llama3")[0].config
        return
    # 6 prompt + 8 new tokens: past Mistral's window of 4, so the cache's window mask is used.
    generated = model.generate(ids, max_new_tokens=8)["token_ids"]
    np.testing.assert_array_equal(generated, reference["continuation"])


def test_imported_settings(imported):
    name, model, _ = imported
    config = model.config
    if name.startswith("tiny_llama3"):
        assert config.rope_max_wavelength == 500000.0 and config.rope_scaling == {
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64}
    elif name == "tiny_mistral":
        assert config.sliding_window == 4 and config.rope_scaling is None
    elif name == "tiny_llama_head_dim":  # 4 heads x 16 over a width of 32
        assert config.head_dim == 16 and model.backbone.blocks[0].self_attention.query_kernel.shape == (32, 4, 16)
    elif name == "tiny_mixtral":  # make_mixtral_reference.py: 4 experts, 2 a token, a sharp router
        assert (config.num_experts, config.experts_per_token, config.router_aux_loss_weight) == (4, 2, 0.001)
        assert type(model.backbone.blocks[0].feedforward).__name__ == "MixtureOfExperts"
    else:
        attention = model.backbone.blocks[0].self_attention
        assert config.rope_max_wavelength == 1e6 and config.tie_embeddings and config.sliding_window is None
        assert attention.query_bias is not None and attention.value_bias is not None
        assert attention.output_bias is None and not model.backbone.blocks[0].feedforward.use_bias


def test_mistral_uncached_recompute_past_the_window_matches_transformers():
    model, _ = from_huggingface(HERE / "tiny_mistral")
    reference = np.load(HERE / "tiny_mistral_expected.npz")
    generated = generate_uncached(model, reference["token_ids"], max_new_tokens=8, temperature=0)
    np.testing.assert_array_equal(generated, reference["continuation"])


def test_dynamic_ntk_llama_past_its_positions_matches_transformers():
    model, _ = from_huggingface(HERE / "tiny_llama_dynamic")
    reference = np.load(HERE / "tiny_llama_dynamic_expected.npz")
    assert model.config.max_length == 32  # 8 positions stretched 4 times
    ids = reference["token_ids"]  # 16 tokens: the base grows past 8
    logits = model({"token_ids": ids, "padding_mask": np.ones_like(ids)}).numpy()
    np.testing.assert_allclose(logits, reference["logits"], atol=1e-4)
    prompts = ids[:, :6]
    generated = model.generate(prompts, max_new_tokens=10)["token_ids"]
    np.testing.assert_array_equal(generated, reference["cached_continuation"])
    recomputed = generate_uncached(model, prompts, max_new_tokens=10, temperature=0)
    np.testing.assert_array_equal(recomputed, reference["continuation"])


@pytest.mark.parametrize("case", sorted({key.partition("/")[0] for key in np.load(HERE / "rope_reference.npz")}))
def test_rotary_embedding_matches_transformers_for_each_rope_scaling(case):
    reference = np.load(HERE / "rope_reference.npz")
    settings = json.loads(str(reference[f"{case}/settings"]))
    hf = _Config({"rope_parameters": {"rope_theta": settings["base"], **settings["rope_parameters"]},
                  "max_position_embeddings": settings["max_position_embeddings"]}, "config.json")
    theta, scaling = rope_settings(hf)
    rotary = RotaryEmbedding(theta, scaling=scaling)
    rotated = rotary(reference[f"{case}/query"]).numpy()
    np.testing.assert_allclose(rotated, reference[f"{case}/rotated"], atol=2e-5)
    assert rotary.attention_factor == pytest.approx(float(reference[f"{case}/attention_factor"]), rel=1e-6)
    if rotary.inverse_frequency is not None:  # dynamic computes its own per call
        np.testing.assert_allclose(rotary.inverse_frequency, reference[f"{case}/inverse_frequency"], rtol=1e-6)


def test_published_configs_map_to_our_config():
    llama = mapped(LLAMA_3_1_8B)
    assert (llama.rope_max_wavelength, llama.rope_scaling["rope_type"], llama.max_length,
            llama.key_value_heads, llama.tie_embeddings) == (500000.0, "llama3", 131072, 8, False)
    mistral = mapped(MISTRAL_7B)
    assert (mistral.sliding_window, mistral.rope_scaling, mistral.use_bias) == (4096, None, False)
    qwen2 = mapped(QWEN2_0_5B)  # use_sliding_window false: its sliding_window is unused
    assert (qwen2.sliding_window, qwen2.qkv_bias, qwen2.use_bias, qwen2.tie_embeddings) == (None, True, False, True)


def test_transformers5_layout_reads_rope_theta_from_rope_parameters():
    values = {**LLAMA_3_1_8B, "rope_parameters": {"rope_theta": 500000.0, **LLAMA_3_1_8B["rope_scaling"]}}
    del values["rope_theta"], values["rope_scaling"]
    assert mapped(values) == mapped(LLAMA_3_1_8B)
    unscaled = {**values, "rope_parameters": {"rope_theta": 1e6, "rope_type": "default"}}
    assert (mapped(unscaled).rope_max_wavelength, mapped(unscaled).rope_scaling) == (1e6, None)


def test_legacy_type_key_and_yarn_defaults_follow_transformers():
    linear = mapped({**MISTRAL_7B, "rope_scaling": {"type": "linear", "factor": 2.0}})
    assert linear.rope_scaling == {"rope_type": "linear", "factor": 2.0}
    yarn = mapped({**QWEN2_0_5B, "rope_scaling": {"rope_type": "yarn", "factor": 4.0,
                                                  "original_max_position_embeddings": 32768,
                                                  "attention_factor": None, "beta_fast": None}})
    assert yarn.rope_scaling == {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    assert (linear.max_length, yarn.max_length) == (2 * 32768, 131072)  # the context each scaling reaches


@pytest.mark.parametrize("change, message", [
    ({"rope_scaling": {"rope_type": "longrope", "factor": 2.0}}, "rope_type='longrope'"),
    ({"rope_theta": None, "rope_scaling": None, "rope_parameters": {"rope_theta": 5e5, "rope_type": "su"}},
     "rope_type='su'"),
    ({"rope_scaling": {**LLAMA_3_1_8B["rope_scaling"], "beta_fast": 3}}, "unknown key"),
    ({"rope_parameters": {"rope_theta": 5e5, "rope_type": "linear", "factor": 2.0}}, "disagree"),
    ({"partial_rotary_factor": 0.5}, "partial_rotary_factor=0.5"),
])
def test_unsupported_llama_settings_raise_checkpoint_errors_naming_them(change, message, tmp_path):
    values = {key: value for key, value in {**LLAMA_3_1_8B, **change}.items() if value is not None}
    with pytest.raises(CheckpointError, match=message):  # refused from config.json, before any weight fits
        from_huggingface(checkpoint_with_config(tmp_path, "tiny_llama3", values))


def test_qwen2_windowing_only_some_layers_is_refused(tmp_path):
    values = {**QWEN2_0_5B, "use_sliding_window": True, "max_window_layers": 12}
    with pytest.raises(CheckpointError, match="12 of 24 layers windowed"):
        from_huggingface(checkpoint_with_config(tmp_path, "tiny_qwen2", values))
    all_layers = mapped({**QWEN2_0_5B, "use_sliding_window": True, "max_window_layers": 0, "sliding_window": 64})
    assert all_layers.sliding_window == 64


@pytest.mark.parametrize("preset, published", [
    ("llama3_8b", LLAMA_3_1_8B), ("mistral_7b", MISTRAL_7B), ("qwen2_0_5b", QWEN2_0_5B),
    ("mixtral_8x7b", MIXTRAL_8X7B)])
def test_presets_are_the_published_configs(preset, published):
    assert TransformerConfig.from_preset(preset) == mapped(published)


@pytest.mark.slow  # about 40 s a family: both exports run their parity checks
@pytest.mark.parametrize("name", ["tiny_llama3", "tiny_mistral", "tiny_qwen2", "tiny_mixtral"])
def test_imported_family_exports_to_onnx_and_savedmodel_with_parity(name, tmp_path):
    from keras_transformers.export.onnx import export_onnx
    from keras_transformers.export.savedmodel import export_savedmodel

    model, _ = from_huggingface(HERE / name)
    export_onnx(model, tmp_path / "onnx")  # verify=True: every file and the ONNX generate loop
    export_savedmodel(model, tmp_path / "savedmodel")  # verify=True: replayed in a fresh process
