"""Writes ``tiny_mixtral/`` (a tiny random Mixtral: 4 experts, 2 per token, sliding window off)
and ``tiny_mixtral_expected.npz`` (logits on fixed ids, greedy continuations), as
``make_llama_family_reference.py`` does for the other Llama-family models (run once; the tests
need no torch). transformers 5 saves the experts in the published per-expert layout
(``block_sparse_moe.experts.<e>.w1/w2/w3``, ``block_sparse_moe.gate``).

    /tmp/refvenv/bin/python tests/convert/make_mixtral_reference.py
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import transformers  # noqa: E402
from make_llama_family_reference import HERE, perturbed, save  # noqa: E402


def tiny_mixtral():
    torch.manual_seed(8)
    model = perturbed(transformers.MixtralForCausalLM(transformers.MixtralConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=32, rms_norm_eps=1e-5, num_local_experts=4,
        num_experts_per_tok=2, sliding_window=None, tie_word_embeddings=False, pad_token_id=0)))
    with torch.no_grad():  # a router far from uniform: the top-2 choice differs from token to token
        for layer in model.model.layers:
            gate = getattr(layer, "block_sparse_moe", None) or layer.mlp
            gate.gate.weight.mul_(30.0)
    save("tiny_mixtral", model)


if __name__ == "__main__":
    print("transformers", transformers.__version__, "torch", torch.__version__)
    tiny_mixtral()
    for path in sorted((HERE / "tiny_mixtral").glob("*")) + [HERE / "tiny_mixtral_expected.npz"]:
        print(path.relative_to(HERE), os.path.getsize(path))
