"""GPT-2 checkpoints (``gpt2``) → :class:`~keras_transformers.CausalLM`.

GPT-2 stores its linear layers as ``Conv1D`` (``(in, out)``, ours too) and the query, key and
value projections as one ``c_attn`` matrix, split here; ``lm_head.weight``, when stored, is a
copy of the tied token embedding.
"""

from keras_transformers.convert.reader import (
    CheckpointError,
    Family,
    _assign_dense,
    _assign_norm,
    _check_tied_copy,
    build_causal_lm,
    hf_activation,
)
from keras_transformers.models.config import TransformerConfig


def gpt2_config(hf, model_type="gpt2"):
    hidden = hf["n_embd"]
    return TransformerConfig(
        vocab_size=hf["vocab_size"], hidden_size=hidden, num_layers=hf["n_layer"], num_heads=hf["n_head"],
        intermediate_size=hf.get("n_inner") or 4 * hidden,
        activation=hf_activation(hf.get("activation_function", "gelu_new"), "activation_function"),
        norm_first=True, norm_epsilon=hf.get("layer_norm_epsilon", 1e-5), max_length=hf["n_positions"],
        embedding_norm=False, dropout=hf.get("resid_pdrop", 0.1), attention_dropout=hf.get("attn_pdrop", 0.1),
        tie_embeddings=True, pad_token_id=0, initializer_range=hf.get("initializer_range", 0.02))


def _load_gpt2(t, lm):
    d = lm.backbone
    hidden = d.config.hidden_size
    t.assign(d.embeddings.token_embedding.embeddings, "wte.weight")
    t.assign(d.embeddings.position_embedding.position_embeddings, "wpe.weight")
    for i, block in enumerate(d.blocks):
        p = f"h.{i}."
        a = block.self_attention
        weight, full = t.get(p + "attn.c_attn.weight")  # Conv1D: (in, 3·hidden), q|k|v
        bias, _ = t.get(p + "attn.c_attn.bias")
        if weight.shape != (hidden, 3 * hidden):
            raise CheckpointError(f"Tensor {full!r} has shape {weight.shape}; needs {(hidden, 3 * hidden)}.")
        for j, (kernel, b) in enumerate(((a.query_kernel, a.query_bias), (a.key_kernel, a.key_bias),
                                         (a.value_kernel, a.value_bias))):
            kernel.assign(weight[:, j * hidden:(j + 1) * hidden].reshape(kernel.shape))
            b.assign(bias[j * hidden:(j + 1) * hidden].reshape(b.shape))
        t.assign(a.output_kernel, p + "attn.c_proj.weight", lambda w: w.reshape(a.output_kernel.shape))
        t.assign(a.output_bias, p + "attn.c_proj.bias")
        _assign_norm(t, block.self_attention_norm, p + "ln_1")
        _assign_dense(t, block.feedforward.up_proj, p + "mlp.c_fc", transposed=False)
        _assign_dense(t, block.feedforward.down_proj, p + "mlp.c_proj", transposed=False)
        _assign_norm(t, block.feedforward_norm, p + "ln_2")
    _assign_norm(t, d.final_norm, "ln_f")
    _check_tied_copy(t, "lm_head.weight", "wte.weight")


FAMILY = Family(model_types=("gpt2",), make_config=gpt2_config, build=build_causal_lm,
                load=lambda t, model, model_type, task: _load_gpt2(t, model),
                prefixes=lambda model_type: ("transformer.",))
