"""T5 (v1.0 and v1.1, ``model_type: t5``) → :class:`~keras_transformers.Seq2Seq`.

T5 (Raffel et al., 2020) is a pre-norm encoder-decoder with no position embeddings: a learned
relative position bias per head (:class:`~keras_transformers.layers.RelativePositionBias`),
kept in the first block of each stack and shared by all; RMS norms without bias; unscaled
attention scores; no biases anywhere. v1.0 has a ReLU feed-forward and a tied head that reads
the decoder output times ``d_model^-0.5``; v1.1 a gated-GELU feed-forward (``geglu``), an untied
head without the rescale, and ``d_kv`` that need not be ``d_model / num_heads``.

Which head: published v1.1 configs say ``tie_word_embeddings: false`` and carry ``lm_head.weight``;
transformers 5 writes ``tie_word_embeddings: true`` always and says whether to rescale in
``scale_decoder_outputs``. Both layouts are read.

Refused: feed-forwards other than ``relu``, ``gated-gelu``, ``gated-silu``, ``gelu`` (mT5 and
Flan-T5 use ``gated-gelu``, so they import); checkpoints whose encoder and decoder would need
different head counts or widths (one config serves both stacks in our :class:`Seq2Seq`).
"""

from keras_transformers.convert.reader import (
    BUFFERS,
    CheckpointError,
    Family,
    _assign_attention,
    _assign_dense,
    _assign_norm,
    _check_tied_copy,
    build_seq2seq,
)
from keras_transformers.models.config import TransformerConfig

_FEED_FORWARDS = {"relu": "relu", "gated-gelu": "geglu", "gated-gelu_new": "geglu", "gated-silu": "swiglu",
                  "gelu": "gelu_approximate", "gelu_new": "gelu_approximate"}


def _tied(hf):
    """Whether the head is the shared embedding, and whether it reads ``h·d_model^-0.5``."""
    tied = hf.get("tie_word_embeddings", True) is not False
    rescale = hf.get("scale_decoder_outputs", tied)
    return tied, bool(rescale) and tied


def t5_config(hf, model_type="t5"):
    """Our :class:`TransformerConfig` for a T5 ``config.json``. ``max_length`` is
    ``n_positions`` (512 when absent): relative positions have no limit of their own."""
    projection = hf.get("feed_forward_proj", "relu")
    if projection not in _FEED_FORWARDS:
        raise CheckpointError(f"feed_forward_proj={projection!r} is not supported; supported: "
                              f"{', '.join(_FEED_FORWARDS)}.")
    tied, rescale = _tied(hf)
    decoder_layers = hf.get("num_decoder_layers")
    return TransformerConfig(
        vocab_size=hf["vocab_size"], hidden_size=hf["d_model"], num_layers=hf["num_layers"],
        num_decoder_layers=None if decoder_layers in (None, hf["num_layers"]) else decoder_layers,
        num_heads=hf["num_heads"],
        head_dim=hf["d_kv"], intermediate_size=hf["d_ff"], activation=_FEED_FORWARDS[projection],
        norm_type="rms_norm", norm_first=True, norm_epsilon=hf.get("layer_norm_epsilon", 1e-6),
        position_encoding="relative", relative_attention_buckets=hf.get("relative_attention_num_buckets", 32),
        relative_attention_max_distance=hf.get("relative_attention_max_distance", 128),
        max_length=hf.get("n_positions", 512), embedding_norm=False, dropout=hf.get("dropout_rate", 0.1),
        attention_dropout=hf.get("dropout_rate", 0.1), use_bias=False, tie_embeddings=tied,
        rescale_tied_head=rescale, attention_scale=1.0, pad_token_id=hf.get("pad_token_id", 0))


def _assign_feedforward(t, feedforward, name):
    if feedforward.activation in ("geglu", "swiglu"):
        _assign_dense(t, feedforward.gate_proj, name + ".wi_0")
        _assign_dense(t, feedforward.up_proj, name + ".wi_1")
    else:
        _assign_dense(t, feedforward.up_proj, name + ".wi")
    _assign_dense(t, feedforward.down_proj, name + ".wo")


def _load(t, model, model_type="t5", task=None):
    """Assign a T5 checkpoint's tensors to ``model`` (a :class:`Seq2Seq` built from :func:`t5_config`)."""
    t.assign(model.encoder.embeddings.token_embedding.embeddings, "shared.weight")
    for stack, side in ((model.encoder, "encoder"), (model.decoder, "decoder")):
        t.assign(stack.relative_position_bias.embeddings,
                 f"{side}.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
        for i, block in enumerate(stack.blocks):
            p = f"{side}.block.{i}.layer."
            _assign_attention(t, block.self_attention, [f"{p}0.SelfAttention.{n}" for n in "qkvo"])
            _assign_norm(t, block.self_attention_norm, f"{p}0.layer_norm")
            feedforward_layer = 1
            if side == "decoder":
                _assign_attention(t, block.cross_attention_layer, [f"{p}1.EncDecAttention.{n}" for n in "qkvo"])
                _assign_norm(t, block.cross_attention_norm, f"{p}1.layer_norm")
                feedforward_layer = 2
            _assign_feedforward(t, block.feedforward, f"{p}{feedforward_layer}.DenseReluDense")
            _assign_norm(t, block.feedforward_norm, f"{p}{feedforward_layer}.layer_norm")
        _assign_norm(t, stack.final_norm, f"{side}.final_layer_norm")
    if model.config.tie_embeddings:
        copies = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight")
    else:
        t.assign(model.lm_head.projection.kernel, "lm_head.weight", lambda w: w.T)
        copies = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
    for copy in copies:
        _check_tied_copy(t, copy, "shared.weight")


FAMILY = Family(model_types=("t5",), make_config=t5_config, build=build_seq2seq, load=_load,
                not_imported=lambda task: BUFFERS)
