"""The numbers people report: entity-level F1 (conlleval), corpus BLEU (sacreBLEU), perplexity.

Thin adapters over the libraries that define them, so that our numbers are theirs:
``seqeval`` (whose default mode reproduces the conlleval script), ``sacrebleu``, and KerasHub's
``Perplexity`` metric.
"""

import math

import keras_hub
import numpy as np
import sacrebleu
from seqeval import metrics as seqeval_metrics

# exp(mean cross-entropy) over the weighted tokens, as a Keras metric. It honours
# ``sample_weight``, so in our per-token task models it counts exactly the tokens the loss counts.
Perplexity = keras_hub.metrics.Perplexity


def _as_tag_lists(tags, name):
    if isinstance(tags, np.ndarray):
        tags = tags.tolist()
    rows = [[t.decode() if isinstance(t, bytes) else str(t) for t in row] for row in tags]
    if not rows:
        raise ValueError(f"`{name}` is empty: give one list of tags per sentence.")
    return rows


def entity_scores(true_tags, predicted_tags):
    """Entity-level precision, recall and F1, as the CoNLL ``conlleval`` script computes them.

    An entity counts as found only when its type and its exact span match. Chunks are read as
    conlleval reads them, so IOB1 and IOB2 tags give the same entities.

    Args:
        true_tags: one list of tag strings per sentence, e.g. ``[["B-PER", "I-PER", "O"]]``.
        predicted_tags: the same shape.

    Returns:
        ``{"precision", "recall", "f1"}`` as fractions, and ``"per_type"``:
        ``{type: {"precision", "recall", "f1", "support"}}``.

    Example:
        >>> entity_scores([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "O"]])["f1"]
        0.666...
    """
    true_tags = _as_tag_lists(true_tags, "true_tags")
    predicted_tags = _as_tag_lists(predicted_tags, "predicted_tags")
    if len(true_tags) != len(predicted_tags):
        raise ValueError(f"`true_tags` has {len(true_tags)} sentences but `predicted_tags` has "
                         f"{len(predicted_tags)}.")
    for row, (truth, prediction) in enumerate(zip(true_tags, predicted_tags)):
        if len(truth) != len(prediction):
            raise ValueError(f"Sentence {row} has {len(truth)} true tags but {len(prediction)} "
                             "predicted tags.")
    report = seqeval_metrics.classification_report(true_tags, predicted_tags, output_dict=True,
                                                   zero_division=0)
    per_type = {name: {"precision": values["precision"], "recall": values["recall"],
                       "f1": values["f1-score"], "support": int(values["support"])}
                for name, values in report.items() if not name.endswith(" avg")}
    return {"precision": seqeval_metrics.precision_score(true_tags, predicted_tags, zero_division=0),
            "recall": seqeval_metrics.recall_score(true_tags, predicted_tags, zero_division=0),
            "f1": seqeval_metrics.f1_score(true_tags, predicted_tags, zero_division=0),
            "per_type": per_type}


def corpus_bleu(hypotheses, references, tokenize="13a", lowercase=False):
    """Corpus BLEU (Papineni et al., 2002) through sacreBLEU.

    Args:
        hypotheses: one detokenized output string per sentence.
        references: one reference string per sentence (a single reference set).
        tokenize: sacreBLEU's tokenizer: ``"13a"`` (its default, the WMT standard) or
            ``"none"`` for text that is already tokenized (token-level BLEU, as torchtext's
            ``bleu_score`` reports on space-joined tokens).
        lowercase: compare case-insensitively.

    Returns:
        ``{"bleu": score on 0-100, "signature": sacreBLEU's signature string}``; report both.

    Example:
        >>> corpus_bleu(["a cat sat on the mat"], ["a cat sat on the mat"])["bleu"]
        100.00000000000004
    """
    hypotheses, references = list(hypotheses), list(references)
    if len(hypotheses) != len(references):
        raise ValueError(f"`hypotheses` has {len(hypotheses)} sentences but `references` has "
                         f"{len(references)}.")
    if not hypotheses:
        raise ValueError("`hypotheses` is empty.")
    bleu = sacrebleu.metrics.BLEU(tokenize=tokenize, lowercase=lowercase)
    score = bleu.corpus_score(hypotheses, [references])
    return {"bleu": score.score, "signature": str(bleu.get_signature())}


def perplexity(mean_cross_entropy):
    """``exp(loss)``: the perplexity of a mean per-token cross-entropy in nats."""
    if not np.isfinite(mean_cross_entropy) or mean_cross_entropy < 0:
        raise ValueError(f"`mean_cross_entropy` must be a finite non-negative loss in nats, got "
                         f"{mean_cross_entropy}.")
    return math.exp(mean_cross_entropy)
