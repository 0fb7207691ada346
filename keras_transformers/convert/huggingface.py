"""Read a Hugging Face checkpoint directory (``config.json``, ``model.safetensors``, tokenizer
files) into our models, without PyTorch.

Layouts handled (``model_type`` of ``config.json``):

* ``bert`` (BERT, MiniLM), ``roberta``, ``distilbert`` → :class:`~keras_transformers.Encoder`
  (or :class:`~keras_transformers.MaskedLM` when the checkpoint has its MLM head and
  ``task="masked_lm"``).
* ``gpt2``, and the Llama family (``llama`` with RoPE scaling, ``mistral``, ``qwen2``:
  :mod:`~keras_transformers.convert.llama_family`) → :class:`~keras_transformers.CausalLM`.
* ``bart`` → :class:`~keras_transformers.Seq2Seq`.

Hugging Face stores linear weights ``(out, in)`` (GPT-2's ``Conv1D``: ``(in, out)``); our
attention kernels are ``(hidden, heads, head_dim)`` and ``(heads, head_dim, hidden)``, our
``Dense`` kernels ``(in, out)``. RoBERTa and BART number learned positions from 2 (their
pad id + 1, and a fixed offset of 2): we drop those first rows, so that our position 0 is
their first real position (right padding, as our inputs always are).
"""

import os

import numpy as np

from keras_transformers.convert.llama_family import LLAMA_FAMILY, llama_family_config, load_llama_family
from keras_transformers.convert.reader import (  # noqa: F401  (re-exported: the package API)
    CheckpointError,
    _assign_attention,
    _assign_dense,
    _assign_norm,
    _check_tied_copy,
    _check_unexpected,
    _model_config,
    _positions,
    _read_json,
    _Tensors,
    read_config,
    read_tensors,
)
from keras_transformers.models.config import TransformerConfig
from keras_transformers.models.decoder import CausalLM, Decoder
from keras_transformers.models.encoder import Encoder, MaskedLM
from keras_transformers.models.seq2seq import Seq2Seq

SUPPORTED_ARCHITECTURES = ("bert", "roberta", "distilbert", "gpt2", *LLAMA_FAMILY, "bart")


# Tensors Hugging Face checkpoints carry that no model of ours imports, by design: buffers
# (causal-mask and rotary tables, position ids), heads other than the one asked for, and the
# decoder copy of a tied MLM embedding. (Tied copies a decoder stores twice, GPT-2's
# ``lm_head.weight``, are read and compared with the embedding instead: _check_tied_copy.)
_BUFFERS = (r"(.*\.)?position_ids", r".*\.attn\.(masked_)?bias", r".*rotary_emb\.inv_freq")
_POOLER = r"(\w+\.)?pooler\..*"
_NOT_IMPORTED = {
    "encoder": _BUFFERS + (_POOLER, r"cls\..*", r"lm_head\..*", r"vocab_(transform|layer_norm|projector)\..*",
                           r"(pre_)?classifier\..*", r"qa_outputs\..*"),
    "masked_lm": _BUFFERS + (_POOLER, r"cls\.seq_relationship\..*", r"cls\.predictions\.decoder\..*",
                             r"lm_head\.decoder\..*", r"vocab_projector\.weight"),
    "decoder": _BUFFERS,
}


# --------------------------------------------------------------------------- families

_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_approximate", "gelu_pytorch_tanh": "gelu_approximate",
                "gelu_fast": "gelu_approximate", "relu": "relu", "silu": "swiglu"}


def _activation(name, tensor_hint):
    if name not in _ACTIVATIONS:
        raise CheckpointError(f"Unsupported activation {name!r} in config.json ({tensor_hint}); "
                              f"supported: {sorted(_ACTIVATIONS)}.")
    return _ACTIVATIONS[name]


def _bert_config(hf, model_type):
    if model_type == "distilbert":
        return TransformerConfig(
            vocab_size=hf["vocab_size"], hidden_size=hf["dim"], num_layers=hf["n_layers"],
            num_heads=hf["n_heads"], intermediate_size=hf["hidden_dim"],
            activation=_activation(hf.get("activation", "gelu"), "activation"), norm_epsilon=1e-12,
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
        activation=_activation(hf.get("hidden_act", "gelu"), "hidden_act"),
        norm_epsilon=hf.get("layer_norm_eps", 1e-12), max_length=hf["max_position_embeddings"] - offset,
        type_vocab_size=hf.get("type_vocab_size", 2), dropout=hf.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.1), pad_token_id=pad,
        initializer_range=hf.get("initializer_range", 0.02))


def _load_bert(t, encoder, model_type, config):
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


def _gpt2_config(hf):
    hidden = hf["n_embd"]
    return TransformerConfig(
        vocab_size=hf["vocab_size"], hidden_size=hidden, num_layers=hf["n_layer"], num_heads=hf["n_head"],
        intermediate_size=hf.get("n_inner") or 4 * hidden,
        activation=_activation(hf.get("activation_function", "gelu_new"), "activation_function"),
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


_BART_OFFSET = 2  # BartLearnedPositionalEmbedding numbers positions from 2


def _bart_config(hf):
    for ours, a, b in (("num_heads", "encoder_attention_heads", "decoder_attention_heads"),
                       ("intermediate_size", "encoder_ffn_dim", "decoder_ffn_dim")):
        if hf[a] != hf[b]:
            raise CheckpointError(f"{a}={hf[a]} differs from {b}={hf[b]}; our Seq2Seq has one {ours}.")
    return TransformerConfig(
        vocab_size=hf["vocab_size"], hidden_size=hf["d_model"], num_layers=hf["encoder_layers"],
        num_decoder_layers=hf["decoder_layers"], num_heads=hf["encoder_attention_heads"],
        intermediate_size=hf["encoder_ffn_dim"],
        activation=_activation(hf.get("activation_function", "gelu"), "activation_function"),
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


# --------------------------------------------------------------------------- tokenizers

def load_tokenizer(path, model_type, hf_config=None):
    """Our tokenizer for a checkpoint directory's tokenizer files, or ``None`` when it has none.

    ``vocab.txt`` → :func:`~keras_transformers.tokenizers.wordpiece_tokenizer` (lower-casing as
    ``tokenizer_config.json`` says); ``vocab.json`` + ``merges.txt`` →
    :func:`~keras_transformers.tokenizers.bytepair_tokenizer`; ``tokenizer.model`` →
    :func:`~keras_transformers.tokenizers.sentencepiece_tokenizer`.
    """
    from keras_transformers import tokenizers

    path = os.fspath(path)
    settings = {}
    settings_path = os.path.join(path, "tokenizer_config.json")
    if os.path.exists(settings_path):
        settings = _read_json(settings_path)
    if os.path.exists(os.path.join(path, "vocab.txt")):
        return tokenizers.wordpiece_tokenizer(os.path.join(path, "vocab.txt"),
                                              lowercase=settings.get("do_lower_case", True))
    if os.path.exists(os.path.join(path, "vocab.json")) and os.path.exists(os.path.join(path, "merges.txt")):
        return tokenizers.bytepair_tokenizer(os.path.join(path, "vocab.json"), os.path.join(path, "merges.txt"))
    if os.path.exists(os.path.join(path, "tokenizer.model")):
        return tokenizers.sentencepiece_tokenizer(os.path.join(path, "tokenizer.model"))
    return None


# --------------------------------------------------------------------------- entry point

def from_huggingface(path, task=None, allow_pickle=False, load_tokenizer_files=True, dtype=None, *,
                     strict=True):
    """Import a Hugging Face checkpoint directory as our model and tokenizer.

    Args:
        path: a directory with ``config.json``, ``model.safetensors`` (or, with
            ``allow_pickle``, ``pytorch_model.bin``) and optionally tokenizer files.
        task: for encoders, ``None`` (an :class:`~keras_transformers.Encoder`) or
            ``"masked_lm"`` (a :class:`~keras_transformers.MaskedLM` with the checkpoint's
            MLM head). Decoders always give a :class:`~keras_transformers.CausalLM`, BART a
            :class:`~keras_transformers.Seq2Seq`.
        allow_pickle: accept a pickled ``pytorch_model.bin`` (needs torch; read with
            ``weights_only=True``).
        load_tokenizer_files: also build the tokenizer (``None`` when the directory has none).
        dtype: dtype policy of the model (e.g. ``"mixed_bfloat16"``).
        strict: refuse a checkpoint with tensors the model does not use (an extra layer: a
            ``config.json`` that does not match the weights). Known extras are always allowed:
            buffers (``position_ids``, rotary ``inv_freq``, GPT-2's ``attn.bias``), the pooler
            and other tasks' heads of an encoder checkpoint. ``strict=False`` imports anyway,
            with a warning naming them.

    Returns:
        ``(model, tokenizer)``.

    Raises:
        CheckpointError (a ``ValueError``): unsupported architecture, pickled weights refused,
        a missing, unexpected (``strict``) or non-finite (NaN/inf) tensor, a shape mismatch
        (naming the tensor), an unreadable ``config.json`` or one lacking a key the
        architecture needs (naming the file and the key).

    Example:
        >>> encoder, tokenizer = from_huggingface("all-MiniLM-L6-v2/")
        >>> ids = tokenizer(["Hello world"])          # ragged (1, None)
        >>> hidden = encoder({"token_ids": ..., "padding_mask": ...})   # (batch, seq, 384)
    """
    hf = read_config(path)
    model_type = hf.get("model_type")
    if model_type not in SUPPORTED_ARCHITECTURES:
        raise CheckpointError(f"Unsupported architecture: model_type={model_type!r} "
                              f"(architectures={hf.get('architectures')}); supported: "
                              f"{', '.join(SUPPORTED_ARCHITECTURES)}.")
    if task not in (None, "masked_lm"):
        raise ValueError(f"`task` must be None or 'masked_lm', got {task!r}.")
    if task == "masked_lm" and model_type not in ("bert", "roberta", "distilbert"):
        raise ValueError(f"task='masked_lm' needs an encoder checkpoint, got model_type={model_type!r}.")
    tensors = read_tensors(path, allow_pickle=allow_pickle)
    used = set()
    if model_type in ("bert", "roberta", "distilbert"):
        config = _model_config(_bert_config, hf, model_type)
        t = _Tensors(tensors, (f"{model_type}.",), used)
        if task == "masked_lm":
            model = MaskedLM(Encoder(config, dtype=dtype), dtype=dtype)
            model.build()
            _load_bert(t, model.backbone, model_type, config)
            _load_mlm_head(t, model, model_type)
        else:
            model = Encoder(config, dtype=dtype)
            model.build()
            _load_bert(t, model, model_type, config)
        allowed = _NOT_IMPORTED["masked_lm" if task == "masked_lm" else "encoder"]
    elif model_type == "gpt2":
        model = CausalLM(Decoder(_model_config(_gpt2_config, hf), dtype=dtype), dtype=dtype)
        model.build()
        _load_gpt2(_Tensors(tensors, ("transformer.",), used), model)
        allowed = _NOT_IMPORTED["decoder"]
    elif model_type in LLAMA_FAMILY:
        model = CausalLM(Decoder(_model_config(llama_family_config, hf, model_type), dtype=dtype), dtype=dtype)
        model.build()
        load_llama_family(_Tensors(tensors, ("model.",), used), model)
        allowed = _NOT_IMPORTED["decoder"]
    else:
        model = Seq2Seq(_model_config(_bart_config, hf), dtype=dtype)
        model.build()
        _load_bart(_Tensors(tensors, ("model.",), used), model)
        allowed = _NOT_IMPORTED["decoder"]
    _check_unexpected(tensors, used, allowed, strict, path)
    tokenizer = load_tokenizer(path, model_type, hf) if load_tokenizer_files else None
    return model, tokenizer
