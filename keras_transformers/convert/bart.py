"""BART checkpoints (``bart``) → :class:`~keras_transformers.Seq2Seq`.

BART numbers learned positions from 2 (a fixed offset): we drop those first rows, so that our
position 0 is its first real position. Encoder and decoder share ``shared.weight`` (and the
tied head); a non-zero ``final_logits_bias`` is refused (our tied head has no bias).
"""

import numpy as np

from keras_transformers.convert.reader import (
    CheckpointError,
    Family,
    _assign_attention,
    _assign_dense,
    _assign_norm,
    _check_tied_copy,
    _positions,
    build_seq2seq,
    hf_activation,
)
from keras_transformers.models.config import TransformerConfig

_BART_OFFSET = 2  # BartLearnedPositionalEmbedding numbers positions from 2


def bart_config(hf, model_type="bart"):
    for ours, a, b in (("num_heads", "encoder_attention_heads", "decoder_attention_heads"),
                       ("intermediate_size", "encoder_ffn_dim", "decoder_ffn_dim")):
        if hf[a] != hf[b]:
            raise CheckpointError(f"{a}={hf[a]} differs from {b}={hf[b]}; our Seq2Seq has one {ours}.")
    return TransformerConfig(
        vocab_size=hf["vocab_size"], hidden_size=hf["d_model"], num_layers=hf["encoder_layers"],
        num_decoder_layers=hf["decoder_layers"], num_heads=hf["encoder_attention_heads"],
        intermediate_size=hf["encoder_ffn_dim"],
        activation=hf_activation(hf.get("activation_function", "gelu"), "activation_function"),
        norm_epsilon=1e-5, max_length=hf["max_position_embeddings"], embedding_norm=True,
        scale_embeddings=bool(hf.get("scale_embedding", False)), dropout=hf.get("dropout", 0.1),
        attention_dropout=hf.get("attention_dropout", 0.0), tie_embeddings=True,
        pad_token_id=hf.get("pad_token_id", 1), initializer_range=hf.get("init_std", 0.02))


def _load_bart(t, model):
    t.assign(model.encoder.embeddings.token_embedding.embeddings, "shared.weight")
    for stack, side in ((model.encoder, "encoder"), (model.decoder, "decoder")):
        e = stack.embeddings
        t.assign(e.position_embedding.position_embeddings, f"{side}.embed_positions.weight",
                 _positions(_BART_OFFSET))
        _assign_norm(t, e.norm, f"{side}.layernorm_embedding")
        for i, block in enumerate(stack.blocks):
            p = f"{side}.layers.{i}."
            _assign_attention(t, block.self_attention, [p + "self_attn." + n for n in
                                                        ("q_proj", "k_proj", "v_proj", "out_proj")])
            _assign_norm(t, block.self_attention_norm, p + "self_attn_layer_norm")
            if side == "decoder":
                _assign_attention(t, block.cross_attention_layer, [p + "encoder_attn." + n for n in
                                                                   ("q_proj", "k_proj", "v_proj", "out_proj")])
                _assign_norm(t, block.cross_attention_norm, p + "encoder_attn_layer_norm")
            _assign_dense(t, block.feedforward.up_proj, p + "fc1")
            _assign_dense(t, block.feedforward.down_proj, p + "fc2")
            _assign_norm(t, block.feedforward_norm, p + "final_layer_norm")
    if t.has("final_logits_bias", absolute=True) and np.any(t.get("final_logits_bias", absolute=True)[0]):
        raise CheckpointError("Tensor 'final_logits_bias' is non-zero; our tied LM head has no bias.")
    for copy in ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight"):
        _check_tied_copy(t, copy, "shared.weight")


FAMILY = Family(model_types=("bart",), make_config=bart_config, build=build_seq2seq,
                load=lambda t, model, model_type, task: _load_bart(t, model),
                prefixes=lambda model_type: ("model.",))
