"""The data readers: a task's file(s) as examples (:func:`read_examples`), checked first."""

import os
import re

import tensorflow as tf

from keras_transformers.jobs.common import JobError


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


def labeled_rows(path):
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
        rows = labeled_rows(paths[0])
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
