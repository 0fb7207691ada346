"""CoNLL-2003 English NER from scratch: a transformer encoder tagger, conlleval entity F1.

Anchor: keras.io's from-scratch transformer NER (1 block, width 32, lower-cased word vocabulary)
reaches entity F1 67.94 on dev (eng.testa). Here: a cased WordPiece vocabulary learned from the
training words, a 3-layer pre-norm encoder (width 192, 4 heads, FFN 768, dropout 0.1) under
:class:`~keras_transformers.EncoderTokenClassifier` with a
:class:`~keras_transformers.preprocessing.TaggingPreprocessor` (each word's tag on its first
piece), AdamW with warm-up and cosine decay, batches bucketed by sentence length. Each word takes the tag predicted on its first piece
(``tag_words``); entity precision/recall/F1 are conlleval's (``metrics.entity_scores``).

The data is read from the shared data directory and never copied (its text is licensed).

    python benchmarks/anchors/conll_ner.py ../shared/data/conll2003
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runner  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_transformers.data import conll_tags, parse_conll  # noqa: E402
from keras_transformers.metrics import entity_scores  # noqa: E402
from keras_transformers.models import EncoderTokenClassifier, TransformerConfig  # noqa: E402
from keras_transformers.preprocessing import TaggingPreprocessor  # noqa: E402
from keras_transformers.tokenizers import train_wordpiece, wordpiece_tokenizer  # noqa: E402

TASK = "conll_ner"
ANCHOR = {"value": 67.94, "metric": "dev (eng.testa) entity F1, conlleval",
          "source": "keras-team/keras-io examples/nlp/md/ner_transformers.md (from scratch, 1 block, "
                    "embed 32, 10 epochs)"}
TRAIN_LENGTH, EVAL_LENGTH = 64, 192


def options(parser):
    parser.add_argument("--vocabulary-size", type=int, default=12000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-4)


def as_dataset(sentences, label_names):
    """Ragged ``(words, tags)`` rows of parsed sentences."""
    words = tf.ragged.constant([list(tokens) for tokens, _ in sentences], dtype=tf.string)
    tags = tf.ragged.constant([list(tags) for _, tags in sentences], dtype=tf.string)
    return tf.data.Dataset.from_tensor_slices((words, tags))


def tag_sentences(model, sentences, batch_size=128):
    """Predicted IOB2 tags of every word of ``sentences`` (lists of words)."""
    tag_words = tf.function(model.tag_words)
    predicted = []
    for start in range(0, len(sentences), batch_size):
        words = tf.ragged.constant([list(words) for words in sentences[start:start + batch_size]],
                                   dtype=tf.string)
        predicted += [[tag.decode() for tag in row] for row in tag_words(words).to_list()]
    return predicted


def main(argv=None):
    started = time.perf_counter()
    args = runner.arguments(TASK, __doc__.split("\n")[0], "conll2003", argv, options)
    paths = {split: os.path.join(args.data_dir, f"eng.{split}") for split in ("train", "testa", "testb")}
    label_names = conll_tags(list(paths.values()))
    data = {split: parse_conll(path) for split, path in paths.items()}
    epochs = args.epochs or 10
    config = TransformerConfig(
        vocab_size=args.vocabulary_size, hidden_size=192, num_layers=3, num_heads=4,
        intermediate_size=768, activation="gelu", norm_first=True, norm_epsilon=1e-5,
        embedding_norm=False, max_length=EVAL_LENGTH, dropout=0.1, attention_dropout=0.1)
    if args.smoke:
        args.batch_size = min(args.batch_size, 16)
        data = {split: sentences[:300] for split, sentences in data.items()}
        epochs = args.epochs or 2
        config = config.replace(hidden_size=64, num_layers=1, intermediate_size=128,
                                vocab_size=min(args.vocabulary_size, 2000))

    texts = tf.data.Dataset.from_tensor_slices([" ".join(words) for words, _ in data["train"]])
    vocabulary = train_wordpiece(texts.batch(1000), config.vocab_size, lowercase=False)
    config = config.replace(vocab_size=len(vocabulary))
    tokenizer = wordpiece_tokenizer(vocabulary, lowercase=False)
    start_id, separator_id = vocabulary.index("[CLS]"), vocabulary.index("[SEP]")
    train_preprocessor = TaggingPreprocessor(tokenizer, TRAIN_LENGTH, start_id, separator_id, label_names)
    eval_preprocessor = TaggingPreprocessor(tokenizer, EVAL_LENGTH, start_id, separator_id, label_names)

    # Smoke: one padded shape, so the train step compiles once.
    trim_multiple = 64 if args.smoke else 16

    def preprocess(words, tags):  # pack to TRAIN_LENGTH, then cut the batch's common padding
        inputs, labels = train_preprocessor((words, tags))
        return runner.trim_padding((inputs, labels), inputs["padding_mask"], multiple=trim_multiple)

    # Batches of sentences of similar length (bucketed by word count), padding trimmed.
    train = (as_dataset(data["train"], label_names).shuffle(len(data["train"]), seed=args.seed)
             .group_by_window(lambda words, tags: tf.cast(tf.minimum(tf.size(words) // 8, 4), tf.int64),
                              lambda key, sentences: sentences.batch(args.batch_size, drop_remainder=True),
                              window_size=args.batch_size)
             .map(preprocess).prefetch(tf.data.AUTOTUNE))
    validation = (as_dataset(data["testa"], label_names).batch(128).map(lambda words, tags: eval_preprocessor((words, tags)))
                  .prefetch(tf.data.AUTOTUNE))
    steps_per_epoch = len(data["train"]) // args.batch_size
    total_steps = epochs * steps_per_epoch
    warmup = max(1, total_steps // 20)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=total_steps - warmup, warmup_target=args.learning_rate, warmup_steps=warmup,
        alpha=0.05)
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=0.01, global_clipnorm=1.0)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    model = EncoderTokenClassifier(config, num_classes=len(label_names), dropout=0.1,
                                   preprocessor=eval_preprocessor)
    model.compile(optimizer=optimizer)
    model.build(None)
    runner.log(TASK, f"{model.count_params():,} parameters, vocabulary {len(vocabulary):,}; "
                     f"{epochs} epochs x {steps_per_epoch} steps")
    rows, training_wall = runner.fit(model, train.repeat(), epochs=epochs, steps_per_epoch=steps_per_epoch,
                                     work_dir=args.work_dir, validation_data=validation)

    scores = {}
    for split in ("testa", "testb"):
        words = [list(tokens) for tokens, _ in data[split]]
        truth = [list(tags) for _, tags in data[split]]
        result = entity_scores(truth, tag_sentences(model, words))
        scores[split] = {key: (100 * value if key != "per_type" else
                               {kind: {**v, "f1": 100 * v["f1"]} for kind, v in value.items()})
                         for key, value in result.items()}
        runner.log(TASK, f"{split}: entity F1 {scores[split]['f1']:.2f}")

    runner.plot_curves(rows, runner.output_path(args, "_curves.png"),
                       "CoNLL-2003 NER (token loss / accuracy on first pieces)")
    # A dev sentence of 8-20 words with at least two entities (else the first one).
    words = next((list(tokens) for tokens, tags in data["testa"] if 8 <= len(tokens) <= 20
                  and sum(tag.startswith("B-") for tag in tags) >= 2), list(data["testa"][0][0]))
    inputs = tf.function(eval_preprocessor)(tf.ragged.constant([words], dtype=tf.string))
    length = int(np.sum(inputs["padding_mask"]))
    weights = runner.self_attention_weights(model.backbone, inputs)[0][:, :length, :length]
    pieces = ["[CLS]", *[vocabulary[i] for i in inputs["token_ids"][0, 1:length - 1].numpy()], "[SEP]"]
    runner.plot_attention(weights, pieces, pieces, runner.output_path(args, "_attention.png"),
                          "self-attention, last encoder block, a dev sentence (WordPiece pieces)")

    return runner.write_result(
        args, metric="dev_entity_f1", value=scores["testa"]["f1"], anchor=ANCHOR,
        target={"op": ">=", "value": 72.0},
        config={**config.to_dict(), "tokenizer": f"cased WordPiece learned on eng.train ({len(vocabulary)})",
                "train_sequence_length": TRAIN_LENGTH, "eval_sequence_length": EVAL_LENGTH,
                "batch_size": args.batch_size, "epochs": epochs,
                "optimizer": f"AdamW(peak lr {args.learning_rate}, {warmup}-step warm-up, cosine to 5%, "
                             "weight_decay 0.01 not on biases/norms, global clip 1.0)",
                "parameters": model.count_params(), "labels": label_names},
        steps=int(model.optimizer.iterations), training_wall_s=training_wall,
        total_wall_s=time.perf_counter() - started,
        extra={"dev": scores["testa"], "test": scores["testb"], "test_entity_f1": scores["testb"]["f1"],
               "scoring": "conlleval entity P/R/F1 (seqeval default mode) over words; each word "
                          "tagged by its first WordPiece",
               "epochs": rows})


if __name__ == "__main__":
    main()
