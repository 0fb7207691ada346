"""Read a Hugging Face checkpoint directory (``config.json``, ``model.safetensors``, tokenizer
files) into our models, without PyTorch.

One module per family holds its config mapping and weight assignment (a
:class:`~keras_transformers.convert.reader.Family`); this module finds the family by
``config.json``'s ``model_type`` and runs it around the shared reader. Adding a family is one
new module and one entry in :data:`FAMILIES`.

* :mod:`~keras_transformers.convert.bert`: ``bert`` (BERT, MiniLM), ``roberta``, ``distilbert``
  → :class:`~keras_transformers.Encoder` (or :class:`~keras_transformers.MaskedLM` with
  ``task="masked_lm"``).
* :mod:`~keras_transformers.convert.gpt2`: ``gpt2``, and
  :mod:`~keras_transformers.convert.llama_family`: ``llama`` (with RoPE scaling), ``mistral``,
  ``qwen2``, ``mixtral`` → :class:`~keras_transformers.CausalLM`.
* :mod:`~keras_transformers.convert.bart`: ``bart``, and :mod:`~keras_transformers.convert.t5`:
  ``t5`` (v1.0, v1.1) → :class:`~keras_transformers.Seq2Seq`.

Hugging Face stores linear weights ``(out, in)`` (GPT-2's ``Conv1D``: ``(in, out)``); our
attention kernels are ``(hidden, heads, head_dim)`` and ``(heads, head_dim, hidden)``, our
``Dense`` kernels ``(in, out)``.
"""

import os

from keras_transformers.convert import bart, bert, gpt2, llama_family, t5
from keras_transformers.convert.reader import (  # noqa: F401  (re-exported: the package API)
    CheckpointError,
    _check_unexpected,
    _model_config,
    _read_json,
    _Tensors,
    read_config,
    read_tensors,
)

FAMILIES = (bert.FAMILY, gpt2.FAMILY, llama_family.FAMILY, bart.FAMILY, t5.FAMILY)
_BY_MODEL_TYPE = {model_type: family for family in FAMILIES for model_type in family.model_types}
SUPPORTED_ARCHITECTURES = tuple(_BY_MODEL_TYPE)


# --------------------------------------------------------------------------- tokenizers

def load_tokenizer(path, model_type, hf_config=None):
    """Our tokenizer for a checkpoint directory's tokenizer files, or ``None`` when it has none.

    ``vocab.txt`` → :func:`~keras_transformers.tokenizers.wordpiece_tokenizer` (lower-casing as
    ``tokenizer_config.json`` says); ``vocab.json`` + ``merges.txt`` →
    :func:`~keras_transformers.tokenizers.bytepair_tokenizer`; ``tokenizer.model`` (Llama) or
    ``spiece.model`` (T5) → :func:`~keras_transformers.tokenizers.sentencepiece_tokenizer`.
    T5's tokenizer appends ``</s>`` (id 1) to each text: a
    :class:`~keras_transformers.preprocessing.Seq2SeqPreprocessor` with ``start_id=0,
    end_id=1, pad_id=0`` frames T5's inputs the same way. Its 100 ``<extra_id_N>`` sentinels
    (span corruption) are not tokenized as single tokens.
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
    for name in ("tokenizer.model", "spiece.model"):
        if os.path.exists(os.path.join(path, name)):
            return tokenizers.sentencepiece_tokenizer(os.path.join(path, name))
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
            MLM head). Decoders always give a :class:`~keras_transformers.CausalLM`, BART and
            T5 a :class:`~keras_transformers.Seq2Seq`.
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
    family = _BY_MODEL_TYPE.get(model_type)
    if family is None:
        raise CheckpointError(f"Unsupported architecture: model_type={model_type!r} "
                              f"(architectures={hf.get('architectures')}); supported: "
                              f"{', '.join(SUPPORTED_ARCHITECTURES)}.")
    if task not in (None, "masked_lm"):
        raise ValueError(f"`task` must be None or 'masked_lm', got {task!r}.")
    if task is not None and task not in family.tasks:
        raise ValueError(f"task={task!r} needs an encoder checkpoint, got model_type={model_type!r}.")
    tensors = read_tensors(path, allow_pickle=allow_pickle)
    used = set()
    model = family.build(_model_config(family.make_config, hf, model_type), task, dtype)
    family.load(_Tensors(tensors, family.prefixes(model_type), used), model, model_type, task)
    _check_unexpected(tensors, used, family.not_imported(task), strict, path)
    tokenizer = load_tokenizer(path, model_type, hf) if load_tokenizer_files else None
    return model, tokenizer
