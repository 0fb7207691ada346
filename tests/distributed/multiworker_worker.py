"""One process of a MultiWorkerMirroredStrategy cluster (TF_CONFIG set), or, without
TF_CONFIG, the one-device reference: run by test_multiworker.py.

    python multiworker_worker.py --out DIR [--models CausalLM,EncoderClassifier] [--reference]
        [--epochs 2] [--optimizer sgd|adam] [--backup DIR] [--stall-once FILE]

Trains from a fixed seed on fixed global batches of 8 (each of the 2 workers gets 4 rows),
whose halves hold very different numbers of real tokens, and writes to ``--out``, for each
model: ``<model>-<task>.json`` (the losses of every epoch; ``task`` is ``worker0``,
``worker1`` or ``single``), ``<model>-<task>.npz`` (the final weights) and, from the chief
alone, ``<model>.keras`` (through ``save_model``: atomic, chief only), ``<model>-loaded.npz``
(the weights of that file loaded back) and with ``--reference`` ``<model>-reference.*``: the
same training on one device (the default strategy) in the chief's process, after the
cluster's.

``--backup DIR`` adds our ``BackupAndRestore``. ``--stall-once FILE``: if FILE does not exist,
the worker creates it (worker 0) and, two steps into the second epoch (after epoch 1's
backup), writes a line ``stalled`` to ``<task>.progress`` and sleeps: a point mid-epoch
where the test SIGKILLs it. The same command run again finds FILE and trains through.
"""

import argparse
import json
import os
import sys
import time

STARTED = time.monotonic()
parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--models", default="CausalLM", help="comma-separated: CausalLM, EncoderClassifier")
parser.add_argument("--reference", action="store_true", help="the chief also trains each model on one device")
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
parser.add_argument("--backup")
parser.add_argument("--stall-once")
args = parser.parse_args()
os.makedirs(args.out, exist_ok=True)

import tensorflow as tf  # noqa: E402

from keras_transformers.training.distribute import (  # noqa: E402
    BackupAndRestore, is_chief, make_strategy, save_model)

# MultiWorkerMirroredStrategy first: its collectives must be configured before any TF op runs.
MULTI = bool(os.environ.get("TF_CONFIG"))
strategy = make_strategy("multi-worker" if MULTI else "default")
if MULTI:
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    NAME = f"{task['type']}{task['index']}"
else:
    NAME = "single"

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_transformers as kt  # noqa: E402

BATCH, SEQ, VOCAB, STEPS_PER_EPOCH = 8, 8, 64, 3
rng = np.random.default_rng(0)
ids = rng.integers(1, VOCAB, (BATCH * STEPS_PER_EPOCH, SEQ + 1)).astype("int32")
mask = np.ones((BATCH * STEPS_PER_EPOCH, SEQ), "int32")
mask[:BATCH // 2, 2:] = 0  # batch 0: worker 0's rows hold 2 real tokens each, worker 1's hold 8
mask[BATCH + BATCH // 2:2 * BATCH, 1:] = 0  # batch 1: worker 1's rows hold 1 each
mask[2 * BATCH:2 * BATCH + 1, 4:] = 0


def data(model_name):
    x = {"token_ids": ids[:, :-1] * mask, "padding_mask": mask}
    return x, (ids[:, 1:] if model_name == "CausalLM" else ids[:, 0] % 3)


CONFIG = dict(vocab_size=VOCAB, num_layers=1, dropout=0.0, attention_dropout=0.0)

# The dataset is batched with the GLOBAL batch size, as one device would see it. Keras hands
# it to strategy.experimental_distribute_dataset, which under MultiWorkerMirroredStrategy
# first rebatches every global batch into per-replica batches (8 -> 4 + 4) and then shards
# those by the auto-shard policy. DATA gives worker i the i-th per-replica part of every
# global batch, so the two workers together see exactly the one-device batch, step by step.
# The default AUTO tries FILE first, which a dataset not read from files cannot do (it falls
# back to DATA with a warning). OFF gives every worker a copy of the whole dataset (TF's
# documentation; not run here): both would then see the same rows, which is not one device's
# global batch.
# With files (TFRecord shards, at least one per worker) FILE is the cheaper choice: each
# worker reads only its files; its global batches then differ from one device's order.
options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA


class Progress(keras.callbacks.Callback):
    """Losses per epoch; and the stall point of --stall-once."""

    def __init__(self):
        super().__init__()
        self.stall = bool(args.stall_once) and not os.path.exists(args.stall_once)
        if self.stall and is_chief(strategy):
            open(args.stall_once, "w").close()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.line(f"epoch {epoch} begins")

    def on_epoch_end(self, epoch, logs=None):
        self.line(f"epoch {epoch} ends loss {logs['loss']:.9g}")

    def on_train_batch_end(self, batch, logs=None):
        if self.stall and self.epoch == 1 and batch == 1:
            self.line("stalled")
            time.sleep(600)

    def line(self, text):
        with open(os.path.join(args.out, f"{NAME}.progress"), "a") as f:
            f.write(text + "\n")


def build(model_name, jit_compile="auto"):
    keras.utils.set_random_seed(0)
    if model_name == "CausalLM":
        model = kt.CausalLM(kt.TransformerConfig.from_preset("tiny", norm_first=True, **CONFIG))
    else:
        model = kt.EncoderClassifier(kt.TransformerConfig.from_preset("tiny", **CONFIG), num_classes=3,
                                     dropout=0.0)
    optimizer = keras.optimizers.SGD(0.5) if args.optimizer == "sgd" else keras.optimizers.Adam(0.01)
    # "auto" is XLA on, which falls back (with a warning) under 2 replicas; the reference is
    # compiled without XLA (False), like the cluster's step, and saves an XLA compilation.
    model.compile(optimizer=optimizer, jit_compile=jit_compile)
    return model


def write(stem, model, history, wrote=False):
    np.savez(os.path.join(args.out, f"{stem}.npz"), *[w.numpy() for w in model.weights])
    with open(os.path.join(args.out, f"{stem}.json"), "w") as f:
        json.dump({"losses": history["loss"], "epochs_run": len(history["loss"]), "chief": is_chief(strategy),
                   "wrote_model": wrote, "replicas": model.distribute_strategy.num_replicas_in_sync}, f)


for model_name in args.models.split(","):
    x, y = data(model_name)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).with_options(options)
    with strategy.scope():
        model = build(model_name)
    callbacks = [Progress()]
    if args.backup:
        callbacks.insert(0, BackupAndRestore(args.backup))  # first: epoch 1 is backed up before the stall
    print(f"{model_name}: fit at {time.monotonic() - STARTED:.1f} s", file=sys.stderr, flush=True)
    history = model.fit(dataset, epochs=args.epochs, verbose=0, callbacks=callbacks).history
    print(f"{model_name}: fitted at {time.monotonic() - STARTED:.1f} s", file=sys.stderr, flush=True)
    path = os.path.join(args.out, f"{model_name}.keras")
    wrote = save_model(model, path)
    write(f"{model_name}-{NAME}", model, history, wrote)
    if wrote:  # the file the chief wrote, loaded back on one device
        np.savez(os.path.join(args.out, f"{model_name}-loaded.npz"),
                 *[w.numpy() for w in keras.saving.load_model(path).weights])
    if args.reference and is_chief(strategy):  # the same training on one device, in this process
        reference = build(model_name, jit_compile=False)  # outside the scope: the default strategy
        write(f"{model_name}-reference", reference,
              reference.fit(dataset, epochs=args.epochs, verbose=0).history)
print(f"done {NAME} in {time.monotonic() - STARTED:.1f} s", file=sys.stderr, flush=True)
