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

from keras_transformers.jobs.callbacks import FinishedEpochsOnly, StopOnInterrupt, plot_curves, read_metrics
from keras_transformers.jobs.common import (
    BACKUP_DIR,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    CPU_SHAPE,
    CURVES_FILE,
    DEFAULT_EPOCHS,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_VOCABULARY_SIZE,
    FAMILIES,
    LOG_DIR,
    METRICS_FILE,
    MODEL_FILE,
    TASKS,
    TOKENIZER_DIR,
    TOKENIZERS,
    JobError,
    one_line,
)
from keras_transformers.jobs.data import labeled_rows, read_examples
from keras_transformers.jobs.evaluate_job import evaluate
from keras_transformers.jobs.export_job import export
from keras_transformers.jobs.generate_job import generate, stop_token_ids
from keras_transformers.jobs.models import build_model, load_model, model_config, parse_overrides, task_of
from keras_transformers.jobs.tokenizer_files import TokenizerSetup, load_tokenizer, train_tokenizer
from keras_transformers.jobs.train_job import train

__all__ = [
    "BACKUP_DIR",
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "CPU_SHAPE",
    "CURVES_FILE",
    "DEFAULT_EPOCHS",
    "DEFAULT_MAX_NEW_TOKENS",
    "DEFAULT_VOCABULARY_SIZE",
    "FAMILIES",
    "LOG_DIR",
    "METRICS_FILE",
    "MODEL_FILE",
    "TASKS",
    "TOKENIZERS",
    "TOKENIZER_DIR",
    "FinishedEpochsOnly",
    "JobError",
    "StopOnInterrupt",
    "TokenizerSetup",
    "build_model",
    "evaluate",
    "export",
    "generate",
    "labeled_rows",
    "load_model",
    "load_tokenizer",
    "model_config",
    "one_line",
    "parse_overrides",
    "plot_curves",
    "read_examples",
    "read_metrics",
    "stop_token_ids",
    "task_of",
    "train",
    "train_tokenizer",
]
