"""Shared builders for the model tests: tiny configs per family, inputs, datasets.

Import as ``from tests.models.helpers import ...`` (the repository root is on ``sys.path``
under ``python -m pytest`` and with the editable install).
"""

import keras
import numpy as np
import tensorflow as tf

from keras_transformers import TransformerConfig

# Every family's switches, applied to the "tiny" preset (vocab 64, width 32, 2 layers, 4 heads).
FAMILIES = {
    # BERT: post-norm, exact GELU, learned positions, embedding norm.
    "bert_like": dict(),
    # GPT-2: pre-norm, tanh GELU, final norm instead of embedding norm.
    "gpt2_like": dict(norm_first=True, activation="gelu_approximate", embedding_norm=False),
    # Llama: RoPE, RMSNorm, SwiGLU, grouped-query attention (4 query heads, 2 KV heads), no biases.
    "llama_like": dict(position_encoding="rotary", norm_type="rms_norm", activation="swiglu",
                       num_key_value_heads=2, norm_first=True, embedding_norm=False,
                       use_bias=False, tie_embeddings=False),
    # Vaswani et al.: ReLU, sinusoidal positions, √d embedding scale.
    "transformer_like": dict(activation="relu", position_encoding="sinusoidal",
                             scale_embeddings=True, embedding_norm=False),
    # T5 (v1.1): relative position bias, RMSNorm, gated GELU, unscaled scores, no biases, and
    # heads narrower than hidden / num_heads (4 × 6 = 24 < 32); a tied head with T5 v1.0's rescale.
    "t5_like": dict(position_encoding="relative", relative_attention_buckets=8, relative_attention_max_distance=16,
                    norm_type="rms_norm", activation="geglu", norm_first=True, embedding_norm=False,
                    use_bias=False, attention_scale=1.0, head_dim=6, rescale_tied_head=True),
    # BERT with segment (token type) embeddings.
    "segments": dict(type_vocab_size=2),
}

VOCAB_SIZE = 64
MAX_LENGTH = 64


def tiny_config(family="bert_like", **changes):
    """The "tiny" preset with a family's switches (and any further ``changes``)."""
    return TransformerConfig.from_preset("tiny", **{**FAMILIES[family], **changes})


def token_inputs(batch=2, length=6, padding=0, vocab_size=VOCAB_SIZE, seed=0, prefix=""):
    """``{prefix}token_ids`` in ``[1, vocab_size)`` and ``{prefix}padding_mask`` as int32 arrays.

    The last ``padding`` positions of every row are padding (id 0, mask 0).
    """
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab_size, size=(batch, length)).astype("int32")
    mask = np.ones((batch, length), "int32")
    if padding:
        ids[:, length - padding:] = 0
        mask[:, length - padding:] = 0
    return {f"{prefix}token_ids": ids, f"{prefix}padding_mask": mask}


def seq2seq_inputs(batch=2, source_length=7, target_length=5, source_padding=0, target_padding=0,
                   vocab_size=VOCAB_SIZE, seed=0):
    """The four Seq2Seq inputs as int32 arrays."""
    return {**token_inputs(batch, source_length, source_padding, vocab_size, seed, "encoder_"),
            **token_inputs(batch, target_length, target_padding, vocab_size, seed + 1, "decoder_")}


def pad(inputs, extra, prefix=""):
    """``inputs`` with ``extra`` padding positions (id 0, mask 0) appended to the ``prefix`` pair."""
    padded = dict(inputs)
    for key in (f"{prefix}token_ids", f"{prefix}padding_mask"):
        padded[key] = np.pad(inputs[key], [(0, 0), (0, extra)])
    return padded


def numpy_outputs(model, inputs, **kwargs):
    return keras.ops.convert_to_numpy(model(inputs, **kwargs))


def repeat_dataset(x, y, batch_size=32, seed=0):
    """An endless shuffled dataset over ``(x, y)``: pass ``steps_per_epoch`` to ``fit``."""
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    return dataset.shuffle(len(y), seed=seed).repeat().batch(batch_size, drop_remainder=True)


def log_softmax(logits):
    logits = logits - logits.max(-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def weighted_loss_and_accuracy(logits, labels, weights):
    """Cross-entropy and accuracy averaged over positions with weight 1, in NumPy.

    ``labels`` may hold anything where ``weights`` is 0; those positions are never read.
    """
    weights = np.asarray(weights, bool)
    logits, labels = np.asarray(logits, np.float64)[weights], np.asarray(labels)[weights]
    nll = -np.take_along_axis(log_softmax(logits), labels[:, None], -1)[:, 0]
    return nll.mean(), (logits.argmax(-1) == labels).mean()
