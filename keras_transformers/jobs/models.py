"""The run's model: its :class:`TransformerConfig` (preset, ``--set`` overrides), the task model
with its preprocessor, and loading a saved one."""

import dataclasses
import os
import zipfile

import keras

from keras_transformers.jobs.common import CPU_SHAPE, FAMILIES, MODEL_FILE, TASKS, JobError, one_line
from keras_transformers.models import (
    CausalLM,
    EncoderClassifier,
    EncoderTokenClassifier,
    Seq2Seq,
    TransformerConfig,
)
from keras_transformers.preprocessing import (
    CausalLMPreprocessor,
    Seq2SeqPreprocessor,
    TaggingPreprocessor,
    TextPreprocessor,
)

# ---------------------------------------------------------------------------------------- config


def _field_value(name, text):
    """``--set name=text`` as the field's type."""
    field = {f.name: f for f in dataclasses.fields(TransformerConfig)}.get(name)
    if field is None:
        try:
            TransformerConfig().replace(**{name: text})
        except ValueError as error:
            raise JobError(f"--set {name}={text}: {error}") from None
    kind = field.type if isinstance(field.type, type) else {"int": int, "float": float, "bool": bool,
                                                            "str": str}.get(str(field.type), str)
    if text.lower() in ("none", "null") and field.default is None:
        return None
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        raise JobError(f"--set {name}={text}: {name} takes {'true or false' if kind is bool else 'a number'}, "
                       f"got {text!r}") from None
    return text


def parse_overrides(overrides):
    """``{field: text}`` (or ``[(field, text)]``) → ``{field: typed value}``, naming a bad field."""
    items = overrides.items() if isinstance(overrides, dict) else overrides
    return {name: _field_value(name, str(value)) if isinstance(value, str) else value
            for name, value in (items or ())}


def model_config(task, preset, overrides, vocabulary_size, sequence_length, pad_id):
    """The run's :class:`TransformerConfig`: ``preset`` (or the task's family at a CPU shape),
    the tokenizer's vocabulary and the sequence length, then the ``--set`` changes."""
    base = {} if preset else dict(CPU_SHAPE)
    try:
        config = TransformerConfig.from_preset(preset or FAMILIES[task])
        config = config.replace(**base, vocab_size=vocabulary_size, max_length=sequence_length,
                                pad_token_id=pad_id)
        config = config.replace(**overrides)
    except ValueError as error:
        raise JobError(str(error)) from None
    if config.vocab_size < vocabulary_size:
        raise JobError(f"--set vocab_size={config.vocab_size} is smaller than the tokenizer's "
                       f"{vocabulary_size} ids")
    if config.max_length < sequence_length:
        raise JobError(f"--set max_length={config.max_length} is shorter than --sequence-length {sequence_length}")
    return config


# ----------------------------------------------------------------------------------------- models


def _special_id(tokenizer, hf, names, hf_key):
    for name in names:
        try:
            token_id = tokenizer.token_to_id(name)
        except (KeyError, ValueError, TypeError, AttributeError):
            continue
        if token_id is not None:
            return int(token_id)
    if hf.get(hf_key) is not None:
        value = hf[hf_key]
        return int(value[0] if isinstance(value, list) else value)
    raise JobError(f"the checkpoint's tokenizer has none of {list(names)} and config.json no {hf_key}")


def build_model(task, tokenizer, config, sequence_length, label_names=None, pretrained=None, hf=None):
    """A task model with its preprocessor: from ``config``, or around ``pretrained`` (a model
    from :func:`~keras_transformers.convert.from_huggingface`)."""
    t, c = tokenizer, config
    if pretrained is not None:
        starts = ("[CLS]", "<s>", "<|endoftext|>")
        ends = ("[SEP]", "</s>", "<|endoftext|>")
        start = _special_id(t.tokenizer, hf, starts, "bos_token_id")
        end = _special_id(t.tokenizer, hf, ends, "eos_token_id")
        t = dataclasses.replace(t, start_id=start, end_id=end, pad_id=c.pad_token_id)
    if task == "causal-lm":
        preprocessor = CausalLMPreprocessor(t.tokenizer, sequence_length, start_id=t.start_id, end_id=t.end_id,
                                            pad_id=t.pad_id)
        if pretrained is None:
            return CausalLM(c, preprocessor=preprocessor)
        pretrained.preprocessor = preprocessor
        return pretrained
    if task == "seq2seq":
        start = t.start_id if hf is None or hf.get("decoder_start_token_id") is None else int(hf["decoder_start_token_id"])
        preprocessor = Seq2SeqPreprocessor(t.tokenizer, sequence_length, sequence_length, start_id=start,
                                           end_id=t.end_id, pad_id=t.pad_id)
        if pretrained is None:
            return Seq2Seq(c, preprocessor=preprocessor)
        pretrained.preprocessor = preprocessor
        return pretrained
    backbone = c if pretrained is None else pretrained
    if task == "classifier":
        preprocessor = TextPreprocessor(t.tokenizer, sequence_length, start_id=t.start_id, separator_id=t.end_id,
                                        pad_id=t.pad_id, segment_ids=c.type_vocab_size > 0)
        return EncoderClassifier(backbone, num_classes=len(label_names), label_names=label_names,
                                 preprocessor=preprocessor)
    preprocessor = TaggingPreprocessor(t.tokenizer, sequence_length, start_id=t.start_id, separator_id=t.end_id,
                                       label_names=label_names, pad_id=t.pad_id)
    return EncoderTokenClassifier(backbone, num_classes=len(label_names), preprocessor=preprocessor)


def task_of(model):
    """The task name of a task model."""
    for task, model_type in (("causal-lm", CausalLM), ("classifier", EncoderClassifier),
                             ("tagger", EncoderTokenClassifier), ("seq2seq", Seq2Seq)):
        if isinstance(model, model_type):
            return task
    raise JobError(f"a {type(model).__name__} is not a model of the tasks {', '.join(TASKS)}")


def _keras_file(path):
    """The ``.keras`` file of ``path`` (a file or a run directory)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, MODEL_FILE)):
            return os.path.join(path, MODEL_FILE)
        raise JobError(f"{path} is a directory without {MODEL_FILE}: give a .keras file or a run directory")
    if not os.path.exists(path):
        raise JobError(f"no such model: {path}")
    if not path.endswith(".keras"):
        raise JobError(f"MODEL must be a .keras file saved with model.save(), or a run directory, got {path!r}")
    return path


def load_model(path):
    """A ``.keras`` file, or the ``model.keras`` of a run directory, loaded (safe mode)."""
    path = _keras_file(path)
    if not zipfile.is_zipfile(path):  # Keras would say "File not found" of a truncated file
        raise JobError(f"{path} is not a .keras file: not a whole zip archive (truncated or corrupt?)")
    try:
        return keras.saving.load_model(path)
    except Exception as error:  # a truncated zip, a foreign file, a class that is not ours
        raise JobError(f"{path} could not be loaded as a Keras model: {one_line(error)}") from None


def _savedmodel_dir(path):
    """A SavedModel version directory at ``path`` (or the newest version under it), or None."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        return None
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    versions = [name for name in os.listdir(path) if name.isdigit()
                and os.path.exists(os.path.join(path, name, "saved_model.pb"))]
    return os.path.join(path, max(versions, key=int)) if versions else None
