"""from_huggingface refuses what would import silently wrong: non-finite tensors, tensors the
model does not use (``strict=True`` by default), tied copies that differ, and config files it
cannot read, naming the tensor, the key and the file. (Issue 14, checkpoint rows.)"""

import json
import pathlib
import shutil
import warnings

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from keras_transformers.convert import CheckpointError, from_huggingface

HERE = pathlib.Path(__file__).parent


def copy_checkpoint(tmp_path, name="tiny_gpt2"):
    target = tmp_path / name
    shutil.copytree(HERE / name, target)
    return target


def edit_tensors(path, edit):
    tensors = load_file(path / "model.safetensors")
    edit(tensors)
    save_file(tensors, path / "model.safetensors")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_tensor_is_refused_by_name(tmp_path, bad):
    path = copy_checkpoint(tmp_path)

    def poison(tensors):
        tensors["transformer.h.1.mlp.c_fc.weight"][3, 5] = bad

    edit_tensors(path, poison)
    with pytest.raises(CheckpointError, match=r"Tensor 'transformer.h.1.mlp.c_fc.weight' holds 1 non-finite "
                                              r"value\(s\) \(NaN or inf\), the first .* at index \(3, 5\)"):
        from_huggingface(path)


def test_non_finite_fused_attention_tensor_is_refused(tmp_path):
    # GPT-2's fused q|k|v weight is read outside the generic assign path.
    path = copy_checkpoint(tmp_path)
    edit_tensors(path, lambda tensors: tensors["transformer.h.0.attn.c_attn.bias"].__setitem__(0, np.nan))
    with pytest.raises(CheckpointError, match="'transformer.h.0.attn.c_attn.bias' holds 1 non-finite"):
        from_huggingface(path)


def test_bf16_nan_is_refused(tmp_path):
    import ml_dtypes

    path = copy_checkpoint(tmp_path, "tiny_llama")

    def poison(tensors):
        for name, value in tensors.items():
            tensors[name] = value.astype(ml_dtypes.bfloat16)
        tensors["model.norm.weight"][0] = np.nan

    edit_tensors(path, poison)
    with pytest.raises(CheckpointError, match="'model.norm.weight' holds 1 non-finite"):
        from_huggingface(path)


def _extra_layer(tensors):
    tensors["transformer.h.99.mlp.c_fc.weight"] = tensors["transformer.h.0.mlp.c_fc.weight"].copy()
    tensors["transformer.h.99.ln_1.weight"] = tensors["transformer.h.0.ln_1.weight"].copy()


def test_unexpected_tensors_are_refused_by_default_and_allowed_with_strict_false(tmp_path):
    path = copy_checkpoint(tmp_path)
    edit_tensors(path, _extra_layer)
    with pytest.raises(CheckpointError, match=r"has 2 tensor\(s\) this model does not use: "
                                              r"'transformer.h.99.ln_1.weight', 'transformer.h.99.mlp.c_fc.weight'"
                                              r".*strict=False"):
        from_huggingface(path)
    with pytest.warns(UserWarning, match=r"'transformer.h.99.ln_1.weight'.*Ignored \(strict=False\)"):
        model, _ = from_huggingface(path, strict=False)
    reference = from_huggingface(HERE / "tiny_gpt2")[0]  # the extra tensors change nothing
    ids = np.array([[5, 6, 7]], np.int32)
    np.testing.assert_array_equal(model({"token_ids": ids, "padding_mask": np.ones_like(ids)}),
                                  reference({"token_ids": ids, "padding_mask": np.ones_like(ids)}))


def test_an_encoder_layer_beyond_num_hidden_layers_is_refused(tmp_path):
    # The realistic case: config.json says fewer layers than the weights hold.
    path = copy_checkpoint(tmp_path, "tiny_bert")
    config = json.loads((path / "config.json").read_text())
    config["num_hidden_layers"] = 1
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"'bert.encoder.layer.1.attention.output.LayerNorm.bias'.* and \d+ more"):
        from_huggingface(path)


def test_known_extras_are_not_unexpected(tmp_path):
    # Buffers and other tasks' heads that real checkpoints carry import under strict=True.
    path = copy_checkpoint(tmp_path, "tiny_bert")

    def add(tensors):
        hidden = tensors["bert.embeddings.word_embeddings.weight"].shape[1]
        tensors["bert.embeddings.position_ids"] = np.arange(8, dtype=np.int64)[None]
        tensors["bert.pooler.dense.weight"] = np.zeros((hidden, hidden), np.float32)
        tensors["cls.seq_relationship.weight"] = np.zeros((2, hidden), np.float32)
        tensors["cls.predictions.decoder.weight"] = tensors["bert.embeddings.word_embeddings.weight"].copy()

    edit_tensors(path, add)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_huggingface(path)
        from_huggingface(path, task="masked_lm")


def test_a_tied_copy_that_differs_is_refused(tmp_path):
    path = copy_checkpoint(tmp_path)
    edit_tensors(path, lambda tensors: tensors.__setitem__(
        "lm_head.weight", tensors["transformer.wte.weight"] + 1.0))
    with pytest.raises(CheckpointError, match="'lm_head.weight' should be a copy of the tied 'transformer.wte.weight'"):
        from_huggingface(path)
    edit_tensors(path, lambda tensors: tensors.__setitem__(
        "lm_head.weight", tensors["transformer.wte.weight"].copy()))
    from_huggingface(path)  # an equal copy is fine


def test_invalid_config_json_names_the_file(tmp_path):
    path = copy_checkpoint(tmp_path)
    (path / "config.json").write_text('{"model_type": "gpt2", "n_embd": 32,')
    with pytest.raises(CheckpointError, match=rf"{(path / 'config.json')} is not readable JSON \(JSONDecodeError"):
        from_huggingface(path)
    (path / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match=r"config.json must hold a JSON object, got list"):
        from_huggingface(path)
    (path / "config.json").write_bytes(b'{"model_type": "\xff"}')
    with pytest.raises(CheckpointError, match=r"config.json is not readable JSON \(UnicodeDecodeError"):
        from_huggingface(path)


@pytest.mark.parametrize("name, key", [("tiny_gpt2", "n_embd"), ("tiny_llama", "intermediate_size"),
                                       ("tiny_bert", "num_attention_heads"), ("tiny_bart", "decoder_ffn_dim")])
def test_a_missing_config_key_is_named_with_the_file(tmp_path, name, key):
    path = copy_checkpoint(tmp_path, name)
    config = json.loads((path / "config.json").read_text())
    del config[key]
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=rf"{path / 'config.json'} has no '{key}', which model_type="):
        from_huggingface(path)


def test_a_config_value_our_config_refuses_names_the_file(tmp_path):
    path = copy_checkpoint(tmp_path)
    config = json.loads((path / "config.json").read_text())
    config["n_layer"] = "two"
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config.json does not describe a model we can build: "
                                              r"`num_layers` must be a positive integer, got 'two'"):
        from_huggingface(path)


def test_an_unreadable_tokenizer_config_names_the_file(tmp_path):
    path = copy_checkpoint(tmp_path, "tiny_bert")
    (path / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    (path / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"tokenizer_config.json is not readable JSON"):
        from_huggingface(path)


def test_a_truncated_safetensors_file_names_the_file(tmp_path):
    path = copy_checkpoint(tmp_path)
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model.safetensors is not a readable safetensors file"):
        from_huggingface(path)
