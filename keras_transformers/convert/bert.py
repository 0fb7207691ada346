"""The BERT family of Hugging Face checkpoints: ``bert`` (BERT, MiniLM), ``roberta``,
``distilbert`` → :class:`~keras_transformers.Encoder`, or :class:`~keras_transformers.MaskedLM`
with the checkpoint's MLM head (``task="masked_lm"``).

RoBERTa numbers learned positions from its pad id + 1: we drop those first rows, so that our
position 0 is its first real position (right padding, as our inputs always are).
"""

from keras_transformers.convert.reader import (
    BUFFERS,
    CheckpointError,
    Family,
    _Tensors,
    _assign_attention,
    _assign_dense,
    _assign_norm,
    _positions,
    hf_activation,
)
from keras_transformers.models.config import TransformerConfig
from keras_transformers.models.encoder import Encoder, MaskedLM

_POOLER = r"(\w+\.)?pooler\..*"
# Heads of other tasks, the pooler, and the decoder copy of a tied MLM embedding.
_NOT_IMPORTED = {
    None: BUFFERS + (_POOLER, r"cls\..*", r"lm_head\..*", r"vocab_(transform|layer_norm|projector)\..*",
                     r"(pre_)?classifier\..*", r"qa_outputs\..*"),
    "masked_lm": BUFFERS + (_POOLER, r"cls\.seq_relationship\..*", r"cls\.predictions\.decoder\..*",
                            r"lm_head\.decoder\..*", r"vocab_projector\.weight"),
}


def bert_config(hf, model_type):
    if model_type == "distilbert":
        return TransformerConfig(
            vocab_size=hf["vocab_size"], hidden_size=hf["dim"], num_layers=hf["n_layers"],
            num_heads=hf["n_heads"], intermediate_size=hf["hidden_dim"],
            activation=hf_activation(hf.get("activation", "gelu"), "activation"), norm_epsilon=1e-12,
            max_length=hf["max_position_embeddings"], type_vocab_size=0,
            dropout=hf.get("dropout", 0.1), attention_dropout=hf.get("attention_dropout", 0.1),
            pad_token_id=hf.get("pad_token_id", 0), initializer_range=hf.get("initializer_range", 0.02))
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(f"Unsupported position_embedding_type "
                              f"{hf['position_embedding_type']!r}; only 'absolute' is.")
    pad = hf.get("pad_token_id", 0) or 0
    offset = pad + 1 if model_type == "roberta" else 0
    return TransformerConfig(
        vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"], num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"], intermediate_size=hf["intermediate_size"],
        activation=hf_activation(hf.get("hidden_act", "gelu"), "hidden_act"),
        norm_epsilon=hf.get("layer_norm_eps", 1e-12), max_length=hf["max_position_embeddings"] - offset,
        type_vocab_size=hf.get("type_vocab_size", 2), dropout=hf.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.1), pad_token_id=pad,
        initializer_range=hf.get("initializer_range", 0.02))


def _load_encoder(t, encoder, model_type, config):
    e = encoder.embeddings
    if model_type == "distilbert":
        t.assign(e.token_embedding.embeddings, "embeddings.word_embeddings.weight")
        t.assign(e.position_embedding.position_embeddings, "embeddings.position_embeddings.weight")
        _assign_norm(t, e.norm, "embeddings.LayerNorm")
        for i, block in enumerate(encoder.blocks):
            p = f"transformer.layer.{i}."
            _assign_attention(t, block.self_attention, [p + "attention." + n for n in
                                                        ("q_lin", "k_lin", "v_lin", "out_lin")])
            _assign_norm(t, block.self_attention_norm, p + "sa_layer_norm")
            _assign_dense(t, block.feedforward.up_proj, p + "ffn.lin1")
            _assign_dense(t, block.feedforward.down_proj, p + "ffn.lin2")
            _assign_norm(t, block.feedforward_norm, p + "output_layer_norm")
        return
    offset = config.pad_token_id + 1 if model_type == "roberta" else 0
    t.assign(e.token_embedding.embeddings, "embeddings.word_embeddings.weight")
    t.assign(e.position_embedding.position_embeddings, "embeddings.position_embeddings.weight",
             _positions(offset))
    if e.segment_embedding is not None:
        t.assign(e.segment_embedding.embeddings, "embeddings.token_type_embeddings.weight")
    _assign_norm(t, e.norm, "embeddings.LayerNorm")
    for i, block in enumerate(encoder.blocks):
        p = f"encoder.layer.{i}."
        _assign_attention(t, block.self_attention, [p + n for n in (
            "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense")])
        _assign_norm(t, block.self_attention_norm, p + "attention.output.LayerNorm")
        _assign_dense(t, block.feedforward.up_proj, p + "intermediate.dense")
        _assign_dense(t, block.feedforward.down_proj, p + "output.dense")
        _assign_norm(t, block.feedforward_norm, p + "output.LayerNorm")


def _load_mlm_head(t, mlm, model_type):
    names = {"distilbert": ("vocab_transform", "vocab_layer_norm", "vocab_projector.bias"),
             "roberta": ("lm_head.dense", "lm_head.layer_norm", "lm_head.bias"),
             "bert": ("cls.predictions.transform.dense", "cls.predictions.transform.LayerNorm",
                      "cls.predictions.bias")}[model_type]
    for name in names:
        if not t.has(name + (".weight" if not name.endswith("bias") else ""), absolute=True):
            raise CheckpointError(f"task='masked_lm' needs the MLM head, but the checkpoint has no "
                                  f"tensor {name!r}* (a base model without its pretraining head).")
    head = _Tensors(t.tensors, (), t.used)  # the head's names carry no backbone prefix
    _assign_dense(head, mlm.transform, names[0])
    _assign_norm(head, mlm.transform_norm, names[1])
    head.assign(mlm.output_bias, names[2])




def _build(config, task, dtype):
    model = Encoder(config, dtype=dtype)
    if task == "masked_lm":
        model = MaskedLM(model, dtype=dtype)
    model.build()
    return model


def _load(t, model, model_type, task):
    if task == "masked_lm":
        _load_encoder(t, model.backbone, model_type, model.config)
        _load_mlm_head(t, model, model_type)
    else:
        _load_encoder(t, model, model_type, model.config)


FAMILY = Family(model_types=("bert", "roberta", "distilbert"), make_config=bert_config, build=_build, load=_load,
                prefixes=lambda model_type: (f"{model_type}.",), not_imported=_NOT_IMPORTED.__getitem__,
                tasks=("masked_lm",))
