"""The jobs behind ``keras-transformers train / evaluate / generate / export`` and the pipeline.

One implementation: the command line (:mod:`keras_transformers.cli`) and the Prefect flow
(``pipelines/``) both call these functions.

- :func:`train` trains a task model on your files into a run directory::

      RUN_DIR/model.keras          the model, preprocessor attached: text in, text out
      RUN_DIR/tokenizer/           the tokenizer's files (vocab.txt, tokenizer.model, ...)
      RUN_DIR/config.json          the run's settings, the model's TransformerConfig, the results
      RUN_DIR/checkpoints/         epoch-NNN.keras after every finished epoch
      RUN_DIR/backup/              weights + optimizer state of the last finished epoch (resuming)
      RUN_DIR/metrics.csv          one row per epoch (keras.callbacks.CSVLogger)
      RUN_DIR/logs/                TensorBoard
      RUN_DIR/curves.png           loss and metrics per epoch (needs matplotlib)

  Running the same :func:`train` again resumes after the last finished epoch (Keras
  ``BackupAndRestore``); a finished run trains nothing more. Ctrl-C stops after the current
  step and keeps what finished.
- :func:`evaluate` scores a model on a file: the task's metrics as a dict.
- :func:`generate` continues prompts (causal LM) or translates sources (seq2seq), from a
  ``.keras`` file, a run directory or an exported SavedModel's text signature.
- :func:`export` writes a verified SavedModel or ONNX files.

Errors a user can fix (a bad path, a bad setting, a malformed file) raise :class:`JobError` or
the readers' ``ValueError`` / ``FileNotFoundError``, each one clear sentence.
"""

import csv
import dataclasses
import json
import math
import os
import re
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from keras_transformers import tokenizers as tokenizer_lib
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

TASKS = ("causal-lm", "classifier", "tagger", "seq2seq")
TOKENIZERS = ("char", "byte", "bpe", "wordpiece", "sentencepiece")
MODEL_FILE, CONFIG_FILE, METRICS_FILE, CURVES_FILE = "model.keras", "config.json", "metrics.csv", "curves.png"
TOKENIZER_DIR, CHECKPOINT_DIR, BACKUP_DIR, LOG_DIR = "tokenizer", "checkpoints", "backup", "logs"

# Without --preset: the task's family at a shape that trains on a CPU in minutes.
FAMILIES = {"causal-lm": "gpt2_small", "classifier": "bert_base", "tagger": "bert_base",
            "seq2seq": "transformer_base"}
CPU_SHAPE = {"hidden_size": 128, "num_layers": 2, "num_heads": 4, "intermediate_size": 512,
             "type_vocab_size": 0}
DEFAULT_EPOCHS = 3
DEFAULT_VOCABULARY_SIZE = 8000
DEFAULT_MAX_NEW_TOKENS = 64
# Settings that may change between a run and its resumption (the rest must match).
_RESUMABLE_CHANGES = {"steps", "epochs", "mlflow", "mlflow_experiment", "jit_compile"}


class JobError(ValueError):
    """A mistake the user can fix: the message says what and where, in one sentence."""


def one_line(error):
    """An exception as one readable line (Keras' "Exception encountered when calling ..."
    wrapping, TensorFlow's node names and ANSI colours removed)."""
    message = getattr(error, "message", None) if isinstance(error, tf.errors.OpError) else None
    message = str(message or error) or type(error).__name__
    message = re.sub(r"\x1b\[[0-9;]*m", "", message)
    if "Exception encountered when calling" in message:
        parts = [part.strip() for part in message.split("\n\n") if part.strip()]
        parts = [p for p in parts if not p.startswith(("Exception encountered", "Arguments received"))]
        message = parts[0] if parts else message
    if isinstance(error, FileNotFoundError) and error.filename and str(error.filename) not in message:
        message = f"{message}: {error.filename}"
    message = re.sub(r"\s*\[\[\{\{node .*", "", message)
    message = " ".join(line.strip() for line in message.splitlines() if line.strip())
    return message if len(message) <= 600 else message[:597] + "..."


# ------------------------------------------------------------------------------------------ data


def _require_files(paths, what="--data"):
    for path in paths:
        if not os.path.exists(path):
            raise JobError(f"{what}: no such file: {path}")
        if os.path.isdir(path):
            raise JobError(f"{what}: {path} is a directory; give a file")


def _paths(task, paths, what):
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    paths = [os.fspath(p) for p in paths]
    limit = 2 if task == "seq2seq" else 1
    if not 1 <= len(paths) <= limit:
        expect = "one two-column file or two line-aligned files" if task == "seq2seq" else "one file"
        raise JobError(f"{what}: {task} takes {expect}, got {len(paths)}: {' '.join(paths)}")
    _require_files(paths, what)
    return paths


_HEADER_LABELS = {"label", "labels", "class", "category", "target", "y", "sentiment", "tag"}


def _is_integer(text):
    return re.fullmatch(r"[0-9]+", text.strip()) is not None


def _labeled_rows(path):
    """``[(text, label)]`` of a TSV/CSV file of text and label; a header row is detected (its
    label column says ``label``/``class``/..., or is the only non-integer label)."""
    from keras_transformers.data import read_pairs

    rows = [(text.decode("utf-8"), label.decode("utf-8").strip())
            for text, label in read_pairs(path).as_numpy_iterator()]
    if rows and (rows[0][1].lower() in _HEADER_LABELS
                 or (len(rows) > 1 and not _is_integer(rows[0][1]) and all(_is_integer(l) for _, l in rows[1:]))):
        rows = rows[1:]
    if not rows:
        raise JobError(f"{path}: no rows of text and label")
    return rows


def _label_names(labels):
    labels = sorted(set(labels))
    if all(_is_integer(label) for label in labels):
        return [str(i) for i in range(max(int(label) for label in labels) + 1)]
    return labels


def read_examples(task, paths, label_names=None):
    """``(dataset, count, label_names)``: the file(s) as unbatched examples for ``task``.

    Elements: causal-lm a string (a non-empty line); classifier ``(text, label_id)``; tagger
    ``(words, tags)`` (1-D strings); seq2seq ``(source, target)``.
    """
    from keras_transformers import data

    if task == "causal-lm":
        dataset = data.read_lines(paths[0], skip_empty=True)
        return dataset, int(dataset.cardinality()), None
    if task == "classifier":
        rows = _labeled_rows(paths[0])
        label_names = label_names or _label_names([label for _, label in rows])
        index = {name: i for i, name in enumerate(label_names)}
        unknown = sorted({label for _, label in rows if label not in index})
        if unknown:
            raise JobError(f"{paths[0]}: label(s) {unknown[:5]} not among the model's labels {label_names}")
        dataset = tf.data.Dataset.from_tensor_slices(
            (tf.constant([text for text, _ in rows]), tf.constant([index[l] for _, l in rows], tf.int32)))
        return dataset, len(rows), label_names
    if task == "tagger":
        dataset = data.read_conll(paths[0])
        return dataset, int(dataset.cardinality()), label_names or data.conll_tags(paths[0])
    dataset = data.read_pairs(*paths)
    return dataset, int(dataset.cardinality()), None


def _texts(task, dataset):
    """The strings of a dataset of examples, for tokenizer training."""
    if task == "causal-lm":
        return dataset
    if task == "classifier":
        return dataset.map(lambda text, label: text)
    if task == "tagger":
        return dataset.map(lambda words, tags: tf.strings.reduce_join(words, separator=" "))
    return dataset.map(lambda source, target: source).concatenate(dataset.map(lambda source, target: target))


def _batched(task, dataset, batch_size):
    return dataset.ragged_batch(batch_size) if task == "tagger" else dataset.batch(batch_size)


# ------------------------------------------------------------------------------------- tokenizers


@dataclasses.dataclass
class TokenizerSetup:
    """A tokenizer and the ids a preprocessor needs from it."""

    tokenizer: object
    kind: str
    pad_id: int
    start_id: int
    end_id: int
    vocabulary_size: int


def _write_json(path, value):
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(value, file, indent=2, ensure_ascii=False, default=str)
        file.write("\n")
    os.replace(temporary, path)


def _read_json(path):
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def train_tokenizer(kind, texts, vocabulary_size, directory):
    """Train a ``kind`` tokenizer on ``texts`` (a dataset of strings) and write its files into
    ``directory``; :func:`load_tokenizer` reads them back."""
    if kind not in TOKENIZERS:
        raise JobError(f"--tokenizer must be one of {', '.join(TOKENIZERS)}, got {kind!r}")
    os.makedirs(directory, exist_ok=True)
    size = vocabulary_size or DEFAULT_VOCABULARY_SIZE
    if kind == "char":
        tokenizer = tokenizer_lib.train_characters(texts)
        _write_json(os.path.join(directory, "characters.json"), tokenizer.characters)
    elif kind == "wordpiece":
        vocabulary = tokenizer_lib.train_wordpiece(texts, size)
        with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as file:
            file.write("".join(token + "\n" for token in vocabulary))
    elif kind == "sentencepiece":
        if size <= 260:
            raise JobError(f"--vocabulary-size must exceed 260 for sentencepiece (256 byte pieces + 4 "
                           f"special tokens), got {size}")
        with open(os.path.join(directory, "tokenizer.model"), "wb") as file:
            file.write(tokenizer_lib.train_sentencepiece(texts, size))
    elif kind == "bpe":
        if size <= 259:
            raise JobError(f"--vocabulary-size must exceed 259 for bpe (256 bytes + 3 special tokens), got {size}")
        vocabulary, merges = tokenizer_lib.train_bytepair(texts, size, special_tokens=("<pad>", "<s>", "</s>"))
        _write_json(os.path.join(directory, "vocab.json"), vocabulary)
        with open(os.path.join(directory, "merges.txt"), "w", encoding="utf-8") as file:
            file.write("".join(merge + "\n" for merge in merges))
    _write_json(os.path.join(directory, "tokenizer.json"), {"kind": kind})
    return load_tokenizer(directory)


def load_tokenizer(directory):
    """The :class:`TokenizerSetup` of a run's tokenizer directory."""
    kind = _read_json(os.path.join(directory, "tokenizer.json"))["kind"]
    if kind == "char":
        tokenizer = tokenizer_lib.CharacterTokenizer(_read_json(os.path.join(directory, "characters.json")))
        return TokenizerSetup(tokenizer, kind, tokenizer.token_to_id("<pad>"), tokenizer.token_to_id("<s>"),
                              tokenizer.token_to_id("</s>"), tokenizer.vocabulary_size())
    if kind == "byte":
        return TokenizerSetup(tokenizer_lib.byte_tokenizer(), kind, tokenizer_lib.PAD_ID,
                              tokenizer_lib.START_OF_TEXT_ID, tokenizer_lib.END_OF_TEXT_ID, 256)
    if kind == "wordpiece":
        tokenizer = tokenizer_lib.wordpiece_tokenizer(os.path.join(directory, "vocab.txt"))
        ids = [tokenizer.token_to_id(token) for token in ("[PAD]", "[CLS]", "[SEP]")]
    elif kind == "sentencepiece":
        tokenizer = tokenizer_lib.sentencepiece_tokenizer(os.path.join(directory, "tokenizer.model"))
        ids = [0, 2, 3]
    else:
        tokenizer = tokenizer_lib.bytepair_tokenizer(os.path.join(directory, "vocab.json"),
                                                     os.path.join(directory, "merges.txt"))
        ids = [tokenizer.token_to_id(token) for token in ("<pad>", "<s>", "</s>")]
    return TokenizerSetup(tokenizer, kind, *[int(i) for i in ids], int(tokenizer.vocabulary_size()))


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


# ------------------------------------------------------------------------------------- callbacks


class StopOnInterrupt(keras.callbacks.Callback):
    """Ctrl-C ends training after the current step, not wherever the signal lands.

    A ``KeyboardInterrupt`` raised inside ``fit`` can be lost: one that arrives while
    TensorFlow runs a step or reads the dataset may never reach Python, and training goes on.
    Within :meth:`catching_ctrl_c`, the first Ctrl-C (or SIGTERM) only sets
    :attr:`interrupted`, and training stops at the next step's end; a second Ctrl-C raises
    ``KeyboardInterrupt`` as usual.
    """

    def __init__(self):
        super().__init__()
        self.interrupted = False

    def _on_ctrl_c(self, signum, frame):
        import signal

        self.interrupted = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the next one interrupts at once
        print("\nCtrl-C: stopping after this step (press again to stop now).", flush=True)

    def catching_ctrl_c(self):
        import contextlib
        import signal
        import threading

        @contextlib.contextmanager
        def handlers():
            if threading.current_thread() is not threading.main_thread():  # only it may set handlers
                yield
                return
            previous = signal.signal(signal.SIGINT, self._on_ctrl_c)
            try:
                yield
            finally:
                signal.signal(signal.SIGINT, previous)

        return handlers()

    def on_train_batch_end(self, batch, logs=None):
        if self.interrupted:
            self.model.stop_training = True


class FinishedEpochsOnly(keras.callbacks.Callback):
    """Forwards every hook to ``callbacks`` except the ``on_epoch_end`` of an epoch that Ctrl-C
    cut short (Keras calls it anyway): that epoch is not checkpointed, logged or tracked as
    finished, so a rerun trains it again."""

    def __init__(self, stop, callbacks):
        super().__init__()
        self.stop = stop
        self.callbacks = list(callbacks)

    def set_model(self, model):
        super().set_model(model)
        for callback in self.callbacks:
            callback.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        for callback in self.callbacks:
            callback.set_params(params)

    def on_epoch_end(self, epoch, logs=None):
        if not self.stop.interrupted:
            for callback in self.callbacks:
                callback.on_epoch_end(epoch, logs)

    def __getattribute__(self, name):
        if name.startswith("on_") and name != "on_epoch_end":
            callbacks = object.__getattribute__(self, "callbacks")

            def forward(*args, **kwargs):
                for callback in callbacks:
                    getattr(callback, name)(*args, **kwargs)

            return forward
        return object.__getattribute__(self, name)


class _EpochClock(keras.callbacks.Callback):
    """Each epoch's wall time in its logs (``epoch_time_s``), so metrics.csv keeps it."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_time_s"] = time.perf_counter() - self.start


def read_metrics(path):
    """The rows of metrics.csv as dicts of floats, one per epoch (a repeated epoch, from a run
    killed between logging and checkpointing it, keeps its last row)."""
    if not os.path.exists(path):
        return []
    rows = {}
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            values = {key: float(value) for key, value in row.items() if value not in ("", "NA", None)}
            if "epoch" in values:
                rows[int(values["epoch"])] = values
    return [rows[epoch] for epoch in sorted(rows)]


def _rewrite_metrics(path, rows):
    if not rows:
        return
    keys = list(dict.fromkeys(key for row in rows for key in row))
    with open(path + ".tmp", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=keys)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: (int(value) if key == "epoch" else value) for key, value in row.items()})
    os.replace(path + ".tmp", path)


def plot_curves(rows, path, title):
    """One panel per metric, training and validation per epoch. Returns ``path``, or ``None``
    without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [key for key in (rows[0] if rows else {}) if key not in ("epoch", "epoch_time_s", "learning_rate")
             and not key.startswith("val_")]
    figure, axes = plt.subplots(1, max(1, len(names)), figsize=(5 * max(1, len(names)), 3.6), squeeze=False)
    epochs = [int(row["epoch"]) + 1 for row in rows]
    for axis, name in zip(axes[0], names):
        for key, label in ((name, "train"), (f"val_{name}", "validation")):
            values = [row.get(key) for row in rows]
            if any(value is not None for value in values):
                axis.plot(epochs, values, marker="o", label=label)
        axis.set_xlabel("epoch")
        axis.set_ylabel(name)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


# ----------------------------------------------------------------------------------------- MLflow


def _mlflow_run(uri, experiment, out, settings, config):
    """Start (or, for a resumed run directory, reopen) the MLflow run of ``out``."""
    try:
        import mlflow
    except ImportError:
        raise JobError('--mlflow needs MLflow: pip install "keras_transformers[tracking]"') from None
    if uri:
        mlflow.set_tracking_uri(uri)
    uri = mlflow.get_tracking_uri()  # default (MLflow 3): sqlite:///mlflow.db here, artifacts in ./mlruns
    mlflow.set_experiment(experiment)
    id_path = os.path.join(out, "mlflow_run.json")
    previous = _read_json(id_path) if os.path.exists(id_path) else None
    if previous and previous.get("tracking_uri") == uri:
        run = mlflow.start_run(run_id=previous["run_id"])
    else:
        run = mlflow.start_run(run_name=os.path.basename(os.path.abspath(out)))
        params = {f"run.{key}": value for key, value in settings.items() if value is not None}
        params.update({f"config.{key}": value for key, value in config.to_dict().items()})
        mlflow.log_params({key: str(value)[:500] for key, value in params.items()})
        _write_json(id_path, {"tracking_uri": uri, "run_id": run.info.run_id,
                              "experiment_id": run.info.experiment_id})
    return mlflow, run


# ------------------------------------------------------------------------------------------ train


def _optimizer(learning_rate, total_steps):
    warmup = min(100, max(total_steps // 10, 0))
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(total_steps - warmup, 1), warmup_target=learning_rate, warmup_steps=warmup,
        alpha=0.1)
    return keras.optimizers.AdamW(schedule, weight_decay=0.01, beta_2=0.99, clipnorm=1.0)


def _check_resume(out, settings):
    path = os.path.join(out, CONFIG_FILE)
    if not os.path.exists(path):
        return False
    previous = _read_json(path).get("run", {})
    changed = sorted(key for key in set(previous) | set(settings)
                     if key not in _RESUMABLE_CHANGES and previous.get(key) != settings.get(key))
    if changed:
        details = ", ".join(f"{key}: {previous.get(key)!r} → {settings.get(key)!r}" for key in changed[:3])
        raise JobError(f"{out} holds a run with other settings ({details}); give another --out to start "
                       f"a new run, or the same settings to resume this one")
    return True


def train(task, data, out, *, validation=None, preset=None, overrides=None, from_pretrained=None,
          tokenizer=None, vocabulary_size=None, steps=None, epochs=None, batch_size=32, sequence_length=128,
          learning_rate=None, seed=0, mlflow=None, mlflow_experiment="keras-transformers", jit_compile=True,
          verbose=1):
    """Train a ``task`` model on ``data`` into the run directory ``out`` (see the module
    docstring for what it holds); resumes a run cut off before.

    Args:
        task: ``"causal-lm"`` (plain text, an example a line), ``"classifier"`` (TSV/CSV of text
            and label), ``"tagger"`` (CoNLL) or ``"seq2seq"`` (a two-column TSV/CSV, or two
            line-aligned files).
        data, validation: the path (seq2seq: one or two paths).
        preset: a :data:`~keras_transformers.models.PRESETS` name; default: the task's family
            (GPT-2, BERT, Transformer) at width 128, 2 layers, 4 heads.
        overrides: ``{field: value}`` changes of the :class:`TransformerConfig` (values may be
            strings, as on the command line).
        from_pretrained: a Hugging Face checkpoint directory to fine-tune, with its tokenizer.
        tokenizer: ``char`` | ``byte`` | ``bpe`` | ``wordpiece`` | ``sentencepiece``, trained on
            the data (default: ``char`` for causal-lm, else ``wordpiece``).
        vocabulary_size: the tokenizer's size (default 8000; char: every character seen).
        steps, epochs: training length (default 3 epochs); steps round up to whole epochs.
        batch_size, sequence_length, learning_rate, seed: as named (learning rate: the AdamW
            peak, after a warm-up, with cosine decay; default 1e-3, 5e-5 when fine-tuning).
        mlflow: ``None`` (off), ``""`` (MLflow's default local store: ``./mlflow.db``, artifacts
            in ``./mlruns``) or a tracking URI: log the settings, each epoch's metrics and the
            final model.

    Returns:
        A dict: ``out``, ``model`` (path), ``epochs`` (finished), ``steps``, ``metrics`` (the
        last epoch's row), ``interrupted``, ``curves`` (path or None), ``mlflow_run_id``.
    """
    if task not in TASKS:
        raise JobError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    data = _paths(task, data, "--data")
    validation = _paths(task, validation, "--validation") if validation else None
    overrides = parse_overrides(overrides or {})
    if from_pretrained is not None:
        if not os.path.isdir(from_pretrained) or not os.path.exists(os.path.join(from_pretrained, "config.json")):
            raise JobError(f"--from-pretrained: {from_pretrained} is not a Hugging Face checkpoint directory "
                           "(no config.json)")
        if tokenizer is not None:
            raise JobError("--tokenizer trains a new tokenizer; --from-pretrained uses the checkpoint's own")
        if preset is not None or overrides:
            raise JobError("--preset and --set describe a new model; --from-pretrained takes the checkpoint's")
    tokenizer = tokenizer or (None if from_pretrained else ("char" if task == "causal-lm" else "wordpiece"))
    if learning_rate is None:
        learning_rate = 5e-5 if from_pretrained else 1e-3
    settings = {"task": task, "data": [os.path.abspath(p) for p in data],
                "validation": [os.path.abspath(p) for p in validation] if validation else None,
                "preset": preset, "overrides": {k: v for k, v in sorted(overrides.items())},
                "from_pretrained": os.path.abspath(from_pretrained) if from_pretrained else None,
                "tokenizer": tokenizer, "vocabulary_size": vocabulary_size, "steps": steps, "epochs": epochs,
                "batch_size": batch_size, "sequence_length": sequence_length, "learning_rate": learning_rate,
                "seed": seed, "mlflow": mlflow, "mlflow_experiment": mlflow_experiment,
                "jit_compile": jit_compile}
    os.makedirs(out, exist_ok=True)
    resuming = _check_resume(out, settings)
    keras.utils.set_random_seed(seed)

    train_data, count, label_names = read_examples(task, data)
    if task == "tagger" and validation:
        from keras_transformers.data import conll_tags

        label_names = conll_tags(data + validation)
    validation_data = read_examples(task, validation, label_names)[0] if validation else None

    tokenizer_dir = os.path.join(out, TOKENIZER_DIR)
    hf, pretrained = None, None
    if from_pretrained:
        from keras_transformers.convert import from_huggingface

        pretrained, hf_tokenizer = from_huggingface(from_pretrained)
        if hf_tokenizer is None:
            raise JobError(f"--from-pretrained: {from_pretrained} has no tokenizer files (vocab.txt, "
                           "vocab.json + merges.txt, or tokenizer.model)")
        hf = _read_json(os.path.join(from_pretrained, "config.json"))
        os.makedirs(tokenizer_dir, exist_ok=True)
        for name in ("vocab.txt", "vocab.json", "merges.txt", "tokenizer.model", "tokenizer_config.json",
                     "special_tokens_map.json", "tokenizer.json"):
            if os.path.exists(os.path.join(from_pretrained, name)):
                shutil.copy(os.path.join(from_pretrained, name), tokenizer_dir)
        config = pretrained.config if isinstance(pretrained, (CausalLM, Seq2Seq)) else pretrained.config
        sequence_length = min(sequence_length, config.max_length)
        setup = TokenizerSetup(hf_tokenizer, "pretrained", config.pad_token_id, 0, 0,
                               int(hf_tokenizer.vocabulary_size()))
        if task in ("classifier", "tagger") and isinstance(pretrained, (CausalLM, Seq2Seq)):
            raise JobError(f"--from-pretrained: {task} needs an encoder checkpoint (BERT, RoBERTa, ...), "
                           f"got a {type(pretrained).__name__}")
        if task == "causal-lm" and not isinstance(pretrained, CausalLM):
            raise JobError("--from-pretrained: causal-lm needs a decoder checkpoint (GPT-2, Llama)")
        if task == "seq2seq" and not isinstance(pretrained, Seq2Seq):
            raise JobError("--from-pretrained: seq2seq needs an encoder-decoder checkpoint (BART)")
    else:
        if resuming and os.path.exists(os.path.join(tokenizer_dir, "tokenizer.json")):
            setup = load_tokenizer(tokenizer_dir)
        else:
            setup = train_tokenizer(tokenizer, _texts(task, train_data), vocabulary_size, tokenizer_dir)
        config = model_config(task, preset, overrides, setup.vocabulary_size, sequence_length, setup.pad_id)
    model = build_model(task, setup, config, sequence_length, label_names, pretrained, hf)

    batches_per_pass = max(1, math.ceil(count / batch_size))
    if steps:
        total_epochs = math.ceil(steps / batches_per_pass)
        steps_per_epoch = math.ceil(steps / total_epochs)
    else:
        total_epochs, steps_per_epoch = epochs or DEFAULT_EPOCHS, batches_per_pass
    model.compile(optimizer=_optimizer(learning_rate, total_epochs * steps_per_epoch), jit_compile=jit_compile)
    model.build(None)
    train_batches = _batched(task, train_data.shuffle(count, seed=seed, reshuffle_each_iteration=True).repeat(),
                             batch_size)
    validation_batches = _batched(task, validation_data, batch_size) if validation_data is not None else None

    config_record = {"run": settings, "model": type(model).__name__, "config": model.config.to_dict(),
                     "label_names": label_names, "tokenizer": setup.kind, "parameters": int(model.count_params()),
                     "epochs": total_epochs, "steps_per_epoch": steps_per_epoch, "examples": count}
    _write_json(os.path.join(out, CONFIG_FILE), config_record)

    tracking, mlflow_run = (None, None)
    if mlflow is not None:
        tracking, mlflow_run = _mlflow_run(mlflow, mlflow_experiment, out, settings, model.config)
    stop = StopOnInterrupt()
    os.makedirs(os.path.join(out, CHECKPOINT_DIR), exist_ok=True)
    metrics_path = os.path.join(out, METRICS_FILE)
    tracked = [_EpochClock(),
               keras.callbacks.CSVLogger(metrics_path, append=True),
               keras.callbacks.ModelCheckpoint(os.path.join(out, CHECKPOINT_DIR, "epoch-{epoch:03d}.keras"))]
    if tracking is not None:
        import mlflow.keras

        tracked.append(mlflow.keras.MlflowCallback())
    # Last: the epoch is checkpointed for resuming only once it is logged everywhere (a kill in
    # between repeats the epoch; read_metrics keeps its later row).
    tracked.append(keras.callbacks.BackupAndRestore(os.path.join(out, BACKUP_DIR), save_freq="epoch",
                                                    delete_checkpoint=False, double_checkpoint=True))
    callbacks = [stop, FinishedEpochsOnly(stop, tracked)]
    try:
        import tensorboard  # noqa: F401  (tf.summary writes nothing without it)

        callbacks.insert(1, keras.callbacks.TensorBoard(os.path.join(out, LOG_DIR)))
    except ImportError:
        print("Note: no TensorBoard logs (the tensorboard package is not installed: pip install tensorboard).")

    print(f"Training a {model.count_params():,}-parameter {type(model).__name__} ({task}, {count:,} examples, "
          f"{setup.kind} tokenizer of {model.config.vocab_size:,} ids): {total_epochs} epoch(s) of "
          f"{steps_per_epoch} steps, batch {batch_size}, into {out}.", flush=True)
    started = time.perf_counter()
    try:
        with stop.catching_ctrl_c():
            model.fit(train_batches, epochs=total_epochs, steps_per_epoch=steps_per_epoch,
                      validation_data=validation_batches, callbacks=callbacks, shuffle=False, verbose=verbose)
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, keep what the checkpoints hold
        stop.interrupted = True
    rows = read_metrics(metrics_path)
    _rewrite_metrics(metrics_path, rows)
    finished = len(rows)
    model.save(os.path.join(out, MODEL_FILE))
    curves = plot_curves(rows, os.path.join(out, CURVES_FILE), f"{task}: {os.path.basename(os.path.abspath(out))}")
    if curves is None:
        print('Note: no curves.png (matplotlib is not installed: pip install "keras_transformers[benchmarks]").')
    record = {**config_record, "finished_epochs": finished, "steps": int(model.optimizer.iterations),
              "metrics": rows[-1] if rows else {}, "interrupted": stop.interrupted,
              "training_wall_s": round(time.perf_counter() - started, 1)}
    _write_json(os.path.join(out, CONFIG_FILE), record)
    mlflow_run_id = None
    if tracking is not None:
        if not stop.interrupted:
            _log_mlflow_model(tracking, model, out)
        tracking.end_run("KILLED" if stop.interrupted else "FINISHED")
        mlflow_run_id = mlflow_run.info.run_id
    if stop.interrupted:
        print(f"\nInterrupted: {finished} of {total_epochs} epochs finished; {MODEL_FILE} holds the model as "
              f"trained so far. Run the same command again to resume from epoch {finished + 1}.", flush=True)
    else:
        last = rows[-1] if rows else {}
        shown = ", ".join(f"{key} {value:.4g}" for key, value in last.items()
                          if key not in ("epoch", "epoch_time_s", "learning_rate"))
        print(f"Saved {os.path.join(out, MODEL_FILE)} ({finished} epoch(s){': ' + shown if shown else ''}).",
              flush=True)
    return {"out": out, "model": os.path.join(out, MODEL_FILE), "epochs": finished,
            "steps": int(model.optimizer.iterations), "metrics": rows[-1] if rows else {},
            "interrupted": stop.interrupted, "curves": curves, "mlflow_run_id": mlflow_run_id}


def _log_mlflow_model(tracking, model, out):
    """The final model into the MLflow run: MLflow's Keras flavour, else the file as an artifact."""
    import logging

    import mlflow.keras

    mlflow_logger = logging.getLogger("mlflow")
    level = mlflow_logger.level
    mlflow_logger.setLevel(logging.ERROR)  # "saving a Keras model without specifying model signature"
    try:
        mlflow.keras.log_model(model, name="model", pip_requirements=["keras_transformers"])
    except Exception as error:  # the flavour's own checks; the artifact still keeps the model
        print(f"Note: mlflow.keras.log_model failed ({one_line(error)}); logging {MODEL_FILE} as an artifact.")
        tracking.log_artifact(os.path.join(out, MODEL_FILE), artifact_path="model")
    finally:
        mlflow_logger.setLevel(level)
    tracking.log_artifact(os.path.join(out, METRICS_FILE))
    if os.path.exists(os.path.join(out, CURVES_FILE)):
        tracking.log_artifact(os.path.join(out, CURVES_FILE))


# --------------------------------------------------------------------------------------- evaluate


def evaluate(model, data, *, batch_size=32, max_new_tokens=None):
    """The task's metrics of ``model`` (a path, or a loaded model) on ``data``, as a dict.

    causal-lm: ``loss`` (nats per token), ``perplexity``; classifier: ``loss``, ``accuracy``;
    tagger: ``precision``, ``recall``, ``f1`` (entity level, conlleval), ``accuracy`` (per
    token); seq2seq: ``loss``, ``perplexity``, ``bleu`` (sacreBLEU, greedy decoding) and
    ``bleu_signature``. Every result also has ``examples``.
    """
    from keras_transformers import metrics as metric_lib

    model = load_model(model) if isinstance(model, (str, os.PathLike)) else model
    task = task_of(model)
    if model.preprocessor is None:
        raise JobError("the model has no preprocessor attached; evaluate needs a text-in model")
    paths = _paths(task, data, "--data")
    label_names = getattr(model, "label_names", None) if task == "classifier" else (
        model.preprocessor.label_names if task == "tagger" else None)
    dataset, count, _ = read_examples(task, paths, label_names)
    batches = _batched(task, dataset, batch_size)
    result = {"task": task, "examples": count}
    if task == "tagger":
        true_tags, predicted = [], []
        for words, tags in batches:
            gold = [[t.decode() for t in row] for row in tags.to_list()]
            guessed = [[t.decode() for t in row] for row in model.tag_words(words).to_list()]
            # Words past the sequence length were cut off before the model: predicted "O".
            predicted += [row + ["O"] * (len(truth) - len(row)) for row, truth in zip(guessed, gold)]
            true_tags += gold
        scores = metric_lib.entity_scores(true_tags, predicted)
        pairs = [(t, p) for truth, guess in zip(true_tags, predicted) for t, p in zip(truth, guess)]
        result.update({key: scores[key] for key in ("precision", "recall", "f1")},
                      accuracy=sum(t == p for t, p in pairs) / max(len(pairs), 1), per_type=scores["per_type"])
        return result
    values = model.evaluate(batches, verbose=0, return_dict=True)
    result["loss"] = float(values["loss"])
    if task == "classifier":
        result["accuracy"] = float(values["accuracy"])
        return result
    result["perplexity"] = metric_lib.perplexity(result["loss"])
    if task == "seq2seq":
        limit = model.config.max_length - 1
        new_tokens = min(max_new_tokens or model.preprocessor.target_length, limit)
        sources, targets = [], []
        for source, target in dataset.as_numpy_iterator():
            sources.append(source.decode("utf-8"))
            targets.append(target.decode("utf-8"))
        outputs = []
        for start in range(0, len(sources), batch_size):
            outputs += model.generate_text(sources[start:start + batch_size], new_tokens)
        bleu = metric_lib.corpus_bleu(outputs, targets)
        result.update(bleu=bleu["bleu"], bleu_signature=bleu["signature"])
    return result


# --------------------------------------------------------------------------------------- generate


def stop_token_ids(model):
    """Where generation stops: the preprocessor's end id, unless that id is a plain character of
    a :class:`~keras_transformers.tokenizers.CharacterTokenizer` without special tokens (the
    quickstart's: its text has no end-of-text token, and its "end" is the newline)."""
    tokenizer = model.preprocessor.tokenizer
    if isinstance(tokenizer, tokenizer_lib.CharacterTokenizer) and model.preprocessor.end_id not in (
            tokenizer.special_token_ids):
        return []
    return [int(model.preprocessor.end_id)]


def _generate_savedmodel(directory, prompts, settings):
    given = sorted(key for key, value in settings.items() if value is not None)
    if given:
        raise JobError(f"{directory} is a SavedModel: its generation settings were fixed at export; "
                       f"export again with {', '.join('--' + k.replace('_', '-') for k in given)} to change them")
    loaded = tf.saved_model.load(directory)
    signature = loaded.signatures.get("serving_default")
    if signature is None or "text" not in signature.structured_input_signature[1]:
        raise JobError(f"{directory} has no text-in serving_default signature (export a model with its "
                       "preprocessor attached)")
    outputs = signature(text=tf.constant(list(prompts)))
    if "generated_text" not in outputs:
        raise JobError(f"{directory} does not generate text (its serving_default gives {sorted(outputs)})")
    return [text.decode("utf-8") for text in outputs["generated_text"].numpy()]


def generate(model, prompts, *, max_new_tokens=None, temperature=None, top_k=None, top_p=None, num_beams=None,
             seed=None):
    """Continue each prompt (causal LM) or translate each source (seq2seq); returns strings.

    ``model``: a loaded model, a ``.keras`` path, a run directory, or a SavedModel version
    directory (then through its text signature, whose settings were fixed at export). A causal
    LM asked for more tokens than its context (``max_length``) holds slides its window
    (:func:`~keras_transformers.generation.generate_uncached`: sampling or greedy, no beams).
    """
    prompts = [str(prompt) for prompt in prompts]
    if not prompts:
        raise JobError("give at least one prompt")
    settings = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_k": top_k, "top_p": top_p,
                "num_beams": num_beams, "seed": seed}
    if isinstance(model, (str, os.PathLike)):
        directory = _savedmodel_dir(model)
        if directory is not None and not os.path.exists(os.path.join(model, MODEL_FILE)):
            return _generate_savedmodel(directory, prompts, settings)
        model = load_model(model)
    task = task_of(model)
    if task not in ("causal-lm", "seq2seq"):
        raise JobError(f"generate needs a causal-lm or seq2seq model, got a {task} ({type(model).__name__})")
    if model.preprocessor is None:
        raise JobError("the model has no preprocessor attached: it takes ids, not text")
    limit = model.config.max_length
    if max_new_tokens is None:  # a seq2seq decoder cannot slide: its default fits its context
        max_new_tokens = DEFAULT_MAX_NEW_TOKENS if task == "causal-lm" else min(DEFAULT_MAX_NEW_TOKENS, limit - 1)
    temperature = 0.0 if temperature is None else float(temperature)
    num_beams = num_beams or 1
    seed = 0 if seed is None else seed
    stop = stop_token_ids(model)
    options = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed}
    if task == "seq2seq":
        if max_new_tokens >= limit:
            raise JobError(f"--max-new-tokens {max_new_tokens} does not fit the model's max_length={limit} "
                           f"(the decoder's context); ask for at most {limit - 1}")
        return model.generate_text(prompts, max_new_tokens, num_beams=num_beams, stop_token_ids=stop or None,
                                   **options)
    preprocessor = model.preprocessor
    prompt_ids = preprocessor.prompt_ids(prompts)
    longest = max(len(ids) for ids in prompt_ids)
    if longest + max_new_tokens <= limit:
        outputs = model.generate(prompt_ids, max_new_tokens, num_beams=num_beams,
                                 stop_token_ids=stop or None, **options)
        continuations = []
        for row, mask, ids in zip(outputs["token_ids"], outputs["padding_mask"], prompt_ids):
            new = row[mask][len(ids):].tolist()
            continuations.append(new[:-1] if new and new[-1] in stop else new)
        return preprocessor.detokenize(continuations)
    if num_beams > 1:
        raise JobError(f"the prompt ({longest} tokens) and --max-new-tokens {max_new_tokens} exceed the model's "
                       f"context of {limit} tokens: ask for at most {max(limit - longest, 0)} new tokens, or "
                       f"drop --num-beams to slide the window (uncached generation)")
    from keras_transformers.generation import generate_uncached

    texts = []
    for ids in prompt_ids:  # one prompt at a time: the sliding window takes prompts of one length
        sequence = generate_uncached(model, [ids], max_new_tokens, temperature=temperature, top_k=top_k,
                                     top_p=top_p, seed=seed)[0, len(ids):].tolist()
        if stop and any(token in stop for token in sequence):
            sequence = sequence[:min(sequence.index(token) for token in stop if token in sequence)]
        texts += preprocessor.detokenize([sequence])
    return texts


# ----------------------------------------------------------------------------------------- export


def export(format, model, output, *, version=None, generation=None, xla=False, verify=True, opset=17):
    """Export ``model`` (a path or a loaded model) as a SavedModel (``format="savedmodel"``:
    ``output/<version>``) or ONNX files (``"onnx"``: the directory ``output``). Returns the path.

    Generative models stop at :func:`stop_token_ids` and generate up to 32 tokens (at most half
    the model's context) unless ``generation`` says otherwise.
    """
    if format not in ("savedmodel", "onnx"):
        raise JobError(f"format must be savedmodel or onnx, got {format!r}")
    if format == "onnx":
        try:
            import tf2onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as error:
            raise JobError(f'export onnx needs {error.name}: pip install "keras_transformers[onnx]"') from None
    from keras_transformers import export as export_lib

    model = load_model(model) if isinstance(model, (str, os.PathLike)) else model
    if format == "onnx":
        return export_lib.export_onnx(model, output, opset=opset, verify=verify)
    generation = dict(generation or {})
    if isinstance(model, (CausalLM, Seq2Seq)) and model.preprocessor is not None:
        generation.setdefault("stop_token_ids", stop_token_ids(model))
        # The export's default (32 new tokens) leaves a short-context model no room for a prompt.
        generation.setdefault("max_new_tokens", min(32, max(1, model.config.max_length // 2)))
    return export_lib.export_savedmodel(model, output, version, generation=generation or None,
                                        jit_compile=xla, verify=verify)
