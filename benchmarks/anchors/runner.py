"""What every from-scratch anchor benchmark shares (issue 7).

One small runner, so the task scripts hold only their data, model and metric:

- :func:`arguments`: the command line every script takes (the data directory, ``--output-dir``,
  ``--work-dir``, ``--smoke``, ``--seed``, ``--epochs``).
- :func:`fit`: ``model.fit`` made resumable: ``keras.callbacks.BackupAndRestore`` saves the
  weights and the optimizer state at the end of every epoch into the work directory, and a
  CSV log there keeps every epoch's metrics and wall time, so a run that is cut off continues
  from its last finished epoch and still reports its whole training curve and training time.
  A rerun of a finished run trains nothing and only evaluates.
- :func:`self_attention_weights` / :func:`cross_attention_weights`: the attention weights of one
  block, from ``MultiHeadAttention(..., return_attention_weights=True)``.
- :func:`plot_curves`, :func:`plot_attention`: the two PNGs (matplotlib, Agg backend).
- :func:`write_result`: ``<output-dir>/<task>.json`` with the metric, its anchor, config, steps,
  wall time, machine and command.
"""

import argparse
import importlib.util
import json
import os
import platform
import sys


def require(*modules, extra="benchmarks"):
    """Exit with one line naming the install when an optional module is missing: checked before
    anything trains, not after a minute of it."""
    def absent(module):
        try:
            return importlib.util.find_spec(module) is None
        except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
            return True

    missing = [module for module in modules if absent(module)]
    if missing:
        sys.exit(f"{os.path.basename(sys.argv[0]) or 'benchmark'}: needs {', '.join(missing)} "
                 f'(pip install "keras_transformers[{extra}]")')


require("matplotlib")  # every anchor script draws its curves (plot_curves, plot_attention)

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# The CLI's epoch clock, metrics.csv reader and curves (plot_curves is used by the scripts).
from keras_transformers.jobs.callbacks import EpochClock, plot_curves  # noqa: E402,F401
from keras_transformers.jobs.callbacks import read_metrics as read_epoch_log  # noqa: E402
from keras_transformers.layers.blocks import DecoderBlock, padding_attention_mask  # noqa: E402

REPOSITORY = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RESULTS = os.path.join(REPOSITORY, "benchmarks", "results")
SHARED_DATA = os.path.abspath(os.path.join(REPOSITORY, "..", "shared", "data"))


def log(task, message):
    print(f"[{task}] {message}", file=sys.stderr, flush=True)


def arguments(task, description, default_data, argv=None, extra=None):
    """Parse the common command line; ``extra(parser)`` adds a script's own options.

    ``data_dir`` defaults to ``../shared/data/<default_data>`` beside the repository.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("data_dir", nargs="?", default=os.path.join(SHARED_DATA, default_data),
                        help=f"the dataset directory (default: ../shared/data/{default_data})")
    parser.add_argument("--output-dir", default=RESULTS,
                        help="where <task>.json and the PNGs go (default: benchmarks/results)")
    parser.add_argument("--work-dir", default=None,
                        help="checkpoints and the epoch log; rerunning with the same one resumes "
                             "(default: <output-dir>/work/<task>[_smoke])")
    parser.add_argument("--smoke", action="store_true",
                        help="a few steps on a few hundred examples: checks the script end to end")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="override the task's epoch count")
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    args.task = task
    if args.work_dir is None:
        args.work_dir = os.path.join(args.output_dir, "work", task + ("_smoke" if args.smoke else ""))
    os.makedirs(args.output_dir, exist_ok=True)
    os.makedirs(args.work_dir, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    return args


def machine():
    """The machine and software that produced a number."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    model_name = platform.processor()
    try:
        with open("/proc/cpuinfo") as file:
            model_name = next((line.split(":", 1)[1].strip() for line in file
                               if line.startswith("model name")), model_name)
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": model_name, "cpus_available": cpus,
            "load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "gpus": [device.name for device in tf.config.list_physical_devices("GPU")],
            "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__}


def fit(model, train, *, epochs, steps_per_epoch, work_dir, validation_data=None,
        validation_steps=None, callbacks=(), verbose=2):
    """``model.fit`` that resumes from the last finished epoch in ``work_dir``.

    The model must be built and compiled. Returns ``(rows, training_wall_s)``: every epoch's
    logged metrics (this run's and earlier, cut-off runs'), and the summed wall time of those
    epochs (tracing and compilation included).
    """
    log_path = os.path.join(work_dir, "epochs.csv")
    # Order matters: the row is logged before the checkpoint, so a cut between the two repeats
    # the epoch (read_epoch_log keeps the later row) instead of losing its row.
    all_callbacks = [EpochClock(), *callbacks, keras.callbacks.CSVLogger(log_path, append=True),
                     keras.callbacks.BackupAndRestore(os.path.join(work_dir, "backup"),
                                                      save_freq="epoch", delete_checkpoint=False)]
    model.fit(train, epochs=epochs, steps_per_epoch=steps_per_epoch, validation_data=validation_data,
              validation_steps=validation_steps, callbacks=all_callbacks, verbose=verbose)
    rows = read_epoch_log(log_path)[:epochs]
    return rows, float(sum(row.get("epoch_time_s", 0.0) for row in rows))


def _block_index(blocks, index):
    return range(len(blocks))[index]


def self_attention_weights(backbone, inputs, block_index=-1):
    """``(batch, heads, seq, seq)`` self-attention weights of one block of an Encoder or Decoder
    backbone, for ``inputs`` (``token_ids``, ``padding_mask``), inference mode."""
    index = _block_index(backbone.blocks, block_index)
    mask = inputs["padding_mask"]
    x = backbone.embeddings(tf.convert_to_tensor(inputs["token_ids"]), training=False)
    for block in backbone.blocks[:index]:
        x = block(x, padding_mask=mask, training=False)
    block = backbone.blocks[index]
    h = block.self_attention_norm(x) if block.norm_first else x
    _, weights = block.self_attention(h, attention_mask=padding_attention_mask(mask),
                                      causal=isinstance(block, DecoderBlock),
                                      return_attention_weights=True, training=False)
    return weights.numpy()


def cross_attention_weights(model, inputs, block_index=-1):
    """``(batch, heads, target_seq, source_seq)`` cross-attention weights of one decoder block of
    a :class:`~keras_transformers.Seq2Seq`, for its four inputs (teacher-forced)."""
    encoder_mask = inputs["encoder_padding_mask"]
    decoder_mask = inputs["decoder_padding_mask"]
    encoded = model.encode({"encoder_token_ids": inputs["encoder_token_ids"],
                            "encoder_padding_mask": encoder_mask}, training=False)
    decoder = model.decoder
    index = _block_index(decoder.blocks, block_index)
    x = decoder.embeddings(tf.convert_to_tensor(inputs["decoder_token_ids"]), training=False)
    for block in decoder.blocks[:index]:
        x = block(x, padding_mask=decoder_mask, encoder_sequence=encoded,
                  encoder_padding_mask=encoder_mask, training=False)
    block = decoder.blocks[index]
    x = block._residual(
        x, lambda h: block.self_attention(h, attention_mask=padding_attention_mask(decoder_mask),
                                          causal=True, training=False),
        block.self_attention_norm, False)
    h = block.cross_attention_norm(x) if block.norm_first else x
    _, weights = block.cross_attention_layer(
        h, key_value=encoded, attention_mask=padding_attention_mask(encoder_mask),
        return_attention_weights=True, training=False)
    return weights.numpy()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_attention(weights, query_labels, key_labels, path, title):
    """A heat map per head of ``weights`` ``(heads, queries, keys)`` (one example)."""
    plt = _pyplot()
    weights = np.asarray(weights)
    heads = weights.shape[0]
    columns = int(np.ceil(np.sqrt(heads)))
    rows = -(-heads // columns)
    size = max(3.0, 0.12 * max(weights.shape[1:]))
    figure, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows), squeeze=False)
    for head, axis in enumerate(axes.flat):
        if head >= heads:
            axis.axis("off")
            continue
        axis.imshow(weights[head], cmap="viridis", vmin=0.0, aspect="auto")
        axis.set_title(f"head {head}")
        axis.set_xticks(range(len(key_labels)))
        axis.set_xticklabels(key_labels, rotation=90, fontsize=7)
        axis.set_yticks(range(len(query_labels)))
        axis.set_yticklabels(query_labels, fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def output_path(args, suffix):
    """``<output-dir>/<task>[_smoke]<suffix>``."""
    return os.path.join(args.output_dir, args.task + ("_smoke" if args.smoke else "") + suffix)


def write_result(args, *, metric, value, anchor, target, config, steps, training_wall_s,
                 total_wall_s, extra=None):
    """Write ``<output-dir>/<task>.json`` (``<task>_smoke.json`` in smoke mode) and return it.

    ``target`` is ``{"op": "<=" or ">=", "value": v}``; ``meets_target`` is computed from it.
    """
    meets = value <= target["value"] if target["op"] == "<=" else value >= target["value"]
    result = {
        "task": args.task, "smoke": bool(args.smoke), "metric": metric, "value": value,
        "anchor": anchor, "target": target, "meets_target": bool(meets), "config": config,
        "steps": steps, "training_wall_s": round(training_wall_s, 1),
        "total_wall_s": round(total_wall_s, 1), "machine": machine(),
        "command": "python " + " ".join([os.path.relpath(sys.argv[0], REPOSITORY)
                                         if os.path.isabs(sys.argv[0]) else sys.argv[0], *sys.argv[1:]]),
        "data_dir": os.path.abspath(args.data_dir), "work_dir": os.path.abspath(args.work_dir),
        **(extra or {}),
    }
    path = output_path(args, ".json")
    with open(path, "w") as file:
        json.dump(result, file, indent=2, default=float)
        file.write("\n")
    print(json.dumps({key: result[key] for key in ("task", "metric", "value", "meets_target",
                                                    "training_wall_s")}, default=float))
    return result


def trim_padding(tensors, padding_mask, multiple=16):
    """Cut ``(batch, seq, ...)`` tensors to the batch's longest real row, rounded up to a multiple
    of ``multiple`` (a few distinct shapes, so XLA compiles the train step only a few times).

    With batches of similar lengths (``tf.data.Dataset.bucket_by_sequence_length``) this saves
    most of the work on padding that a fixed sequence length costs.
    """
    longest = tf.reduce_max(tf.reduce_sum(tf.cast(padding_mask, tf.int32), axis=1))
    length = tf.minimum(tf.shape(padding_mask)[1], (longest + multiple - 1) // multiple * multiple)
    return tf.nest.map_structure(lambda tensor: tensor[:, :length], tensors)
