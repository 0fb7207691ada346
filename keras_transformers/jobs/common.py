"""What every job shares: the task and tokenizer names, a run directory's file names, the
defaults, :class:`JobError` and :func:`one_line`."""

import re

import tensorflow as tf

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
