"""Writes the reference numbers of the Llama-family tests (run once; the tests need no torch):

* ``tiny_llama3/``: a tiny Llama with ``rope_theta`` 500000 and Llama 3.1's ``llama3`` RoPE
  scaling; its ``config.json`` is rewritten in the published Llama 3.x layout (top-level
  ``rope_theta`` + ``rope_scaling``), and ``tiny_llama3_transformers5_config.json`` keeps the
  layout transformers 5 writes (``rope_parameters`` holding ``rope_theta`` and ``rope_type``).
* ``tiny_mistral/``: a tiny Mistral with ``sliding_window`` 4, shorter than the prompts (6) and
  the generated length (14).
* ``tiny_qwen2/``: a tiny Qwen2 (q/k/v biases, tied embeddings, ``rope_theta`` 1e6).
* ``tiny_llama_dynamic/``: a tiny Llama with dynamic NTK scaling, run past its 8 positions.
* ``tiny_llama_head_dim/``: a tiny Llama whose ``head_dim`` (16) is not ``hidden_size /
  num_attention_heads`` (8), as Mistral-Nemo's and Qwen3's are.
* ``tiny_*_expected.npz``: logits on fixed ids, greedy continuations (argmax loop on the logits,
  full recompute each step).
* ``rope_reference.npz``: transformers' ``LlamaRotaryEmbedding`` + ``apply_rotary_pos_emb`` on a
  random query for each RoPE scaling (linear, dynamic below and past its length, llama3, yarn
  with and without mscale, explicit attention factor, ``truncate`` False).

    python -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install torch transformers safetensors numpy
    /tmp/refvenv/bin/python tests/convert/make_llama_family_reference.py                      # all
    /tmp/refvenv/bin/python tests/convert/make_llama_family_reference.py tiny_llama_head_dim  # one
"""

import json
import os
import pathlib

import numpy as np
import torch
import transformers
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

HERE = pathlib.Path(__file__).parent
PROMPTS = [[5, 9, 17, 3, 22, 8], [40, 2, 11, 7, 7, 31]]
NEW_TOKENS = 8
LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 64}
# RoPE cases: (name, rope_parameters without rope_theta, max_position_embeddings, seq_len).
ROPE_CASES = [
    ("default", {"rope_type": "default"}, 32, 12),
    ("linear", {"rope_type": "linear", "factor": 2.0}, 32, 12),
    ("dynamic_short", {"rope_type": "dynamic", "factor": 2.0}, 16, 12),
    ("dynamic_long", {"rope_type": "dynamic", "factor": 2.0}, 8, 20),
    ("llama3", LLAMA3_SCALING, 256, 12),
    ("yarn", {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}, 64, 20),
    ("yarn_mscale", {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16, "mscale": 0.707,
                     "mscale_all_dim": 1.0, "beta_fast": 16.0, "beta_slow": 2.0, "truncate": False}, 64, 20),
    ("yarn_attention_factor", {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 32,
                               "attention_factor": 1.3}, 64, 20),
]


def greedy(model, ids):
    ids = torch.tensor(ids)
    for _ in range(NEW_TOKENS):
        ids = torch.cat([ids, model(ids).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids.numpy().astype(np.int32)


def perturbed(model):
    # Random init of norms is 1 and biases 0; perturb every tensor so a mixed-up mapping shows.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    return model.eval()


def save(name, model):
    ids = torch.tensor(PROMPTS)
    with torch.no_grad():
        logits = model(ids).logits.numpy()
        continuation = greedy(model, PROMPTS)
    model.save_pretrained(str(HERE / name), safe_serialization=True)
    np.savez_compressed(HERE / f"{name}_expected.npz", logits=logits, continuation=continuation,
                        token_ids=ids.numpy().astype(np.int32))


def rewrite_config(name, change):
    path = HERE / name / "config.json"
    values = json.loads(path.read_text())
    change(values)
    path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    return values


def tiny_llama3():
    torch.manual_seed(3)
    model = perturbed(transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=64, hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=False,
        rope_parameters={"rope_theta": 500000.0, **LLAMA3_SCALING}, pad_token_id=0)))
    save("tiny_llama3", model)
    written = json.loads((HERE / "tiny_llama3" / "config.json").read_text())
    assert "rope_parameters" in written, "this transformers writes the published layout itself"
    (HERE / "tiny_llama3_transformers5_config.json").write_text(json.dumps(written, indent=2, sort_keys=True) + "\n")

    def published(values):  # Llama-3.1-8B's layout: rope_theta on top, the rest in rope_scaling
        parameters = values.pop("rope_parameters")
        values["rope_theta"] = parameters.pop("rope_theta")
        values["rope_scaling"] = parameters

    rewrite_config("tiny_llama3", published)


def tiny_mistral():
    torch.manual_seed(4)
    model = perturbed(transformers.MistralForCausalLM(transformers.MistralConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=32, rms_norm_eps=1e-5, sliding_window=4,
        tie_word_embeddings=False, pad_token_id=0)))
    save("tiny_mistral", model)


def tiny_qwen2():
    torch.manual_seed(5)
    model = perturbed(transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=32, rms_norm_eps=1e-6, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, pad_token_id=0)))
    save("tiny_qwen2", model)


def tiny_llama_head_dim():
    torch.manual_seed(8)
    model = perturbed(transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=32, rms_norm_eps=1e-5,
        tie_word_embeddings=False, pad_token_id=0)))
    assert model.model.layers[0].self_attn.q_proj.weight.shape == (64, 32)  # 4 heads x 16 from width 32
    save("tiny_llama_head_dim", model)


def tiny_llama_dynamic():
    """Dynamic NTK scaling past max_position_embeddings (8): logits on 16 ids, and both greedy
    loops: transformers' cached ``generate`` (keys keep the base of their step) and the recompute."""
    torch.manual_seed(7)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=8, rms_norm_eps=1e-5, tie_word_embeddings=False,
        rope_parameters={"rope_theta": 10000.0, "rope_type": "dynamic", "factor": 4.0}, pad_token_id=0))
    with torch.no_grad():
        for parameter in model.parameters():  # large weights: tokens that vary from step to step
            parameter.add_(0.3 * torch.randn_like(parameter))
    model.eval()
    ids = torch.tensor(PROMPTS)
    with torch.no_grad():
        cached = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, do_sample=False)
        recomputed = ids
        for _ in range(10):
            recomputed = torch.cat([recomputed, model(recomputed).logits[:, -1].argmax(-1, keepdim=True)], 1)
        logits = model(recomputed).logits.numpy()
    model.save_pretrained(str(HERE / "tiny_llama_dynamic"), safe_serialization=True)
    np.savez_compressed(HERE / "tiny_llama_dynamic_expected.npz", token_ids=recomputed.numpy().astype(np.int32),
                        logits=logits, cached_continuation=cached.numpy().astype(np.int32),
                        continuation=recomputed.numpy().astype(np.int32))


def rope_reference():
    torch.manual_seed(6)
    heads, head_dim, base = 2, 16, 10000.0
    arrays = {}
    for name, parameters, max_positions, seq_len in ROPE_CASES:
        config = transformers.LlamaConfig(
            hidden_size=heads * head_dim, num_attention_heads=heads, num_key_value_heads=heads,
            max_position_embeddings=max_positions, rope_parameters={"rope_theta": base, **parameters})
        rotary = LlamaRotaryEmbedding(config)
        query = torch.randn(1, heads, seq_len, head_dim)
        positions = torch.arange(seq_len)[None]
        cos, sin = rotary(query, positions)
        rotated, _ = apply_rotary_pos_emb(query, query, cos, sin)
        arrays[f"{name}/query"] = query.numpy()
        arrays[f"{name}/rotated"] = rotated.numpy()
        arrays[f"{name}/inverse_frequency"] = rotary.inv_freq.numpy()
        arrays[f"{name}/attention_factor"] = np.float32(rotary.attention_scaling)
        arrays[f"{name}/settings"] = np.array(json.dumps(
            {"rope_parameters": parameters, "max_position_embeddings": max_positions, "base": base}))
    np.savez_compressed(HERE / "rope_reference.npz", **arrays)


MAKERS = {"tiny_llama3": tiny_llama3, "tiny_mistral": tiny_mistral, "tiny_qwen2": tiny_qwen2,
          "tiny_llama_dynamic": tiny_llama_dynamic, "tiny_llama_head_dim": tiny_llama_head_dim}

if __name__ == "__main__":
    import sys

    print("transformers", transformers.__version__, "torch", torch.__version__)
    names = sys.argv[1:] or [*MAKERS, "rope_reference"]
    for name in names:
        (rope_reference if name == "rope_reference" else MAKERS[name])()
    for name in names:
        if name == "rope_reference":
            print("rope_reference.npz", os.path.getsize(HERE / "rope_reference.npz"))
            continue
        for path in sorted((HERE / name).glob("*")) + [HERE / f"{name}_expected.npz"]:
            print(path.relative_to(HERE), os.path.getsize(path))
