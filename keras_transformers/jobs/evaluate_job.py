"""The evaluate job: :func:`evaluate` scores a model on a file."""

import os

from keras_transformers.jobs.common import JobError
from keras_transformers.jobs.data import _batched, _paths, read_examples
from keras_transformers.jobs.models import load_model, task_of


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
