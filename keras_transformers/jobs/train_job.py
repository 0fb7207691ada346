"""The train job: :func:`train` a task model on your files into a run directory, resuming one.

Under ``strategy="multi-worker"`` every worker runs the same command with the same ``out``
(a directory all of them see). The chief alone writes there: the tokenizer, ``config.json``,
the metrics, the checkpoints and the model (atomically). Each other worker runs the very same
steps (a save reads variables, which may be a collective op every worker must join) into a
scratch directory of its own, deleted at the end, and reads the run's state (the settings,
the tokenizer, the backup to resume from) from ``out``.
"""

import math
import os
import shutil
import tempfile
import time

import keras
import tensorflow as tf

from keras_transformers.jobs.callbacks import (
    FinishedEpochsOnly,
    StopOnInterrupt,
    EpochClock,
    _rewrite_metrics,
    plot_curves,
    read_metrics,
)
from keras_transformers.jobs.common import (
    BACKUP_DIR,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    CURVES_FILE,
    DEFAULT_EPOCHS,
    LOG_DIR,
    METRICS_FILE,
    MODEL_FILE,
    TASKS,
    TOKENIZER_DIR,
    JobError,
)
from keras_transformers.jobs.data import _batched, _paths, _texts, read_examples
from keras_transformers.jobs.models import build_model, model_config, parse_overrides
from keras_transformers.jobs.tokenizer_files import (
    TokenizerSetup,
    _read_json,
    _write_json,
    load_tokenizer,
    train_tokenizer,
)
from keras_transformers.jobs.tracking import _log_mlflow_model, _mlflow_run
from keras_transformers.models import CausalLM, Seq2Seq
from keras_transformers.training.distribute import BackupAndRestore, is_chief, make_strategy, save_model

# Settings that may change between a run and its resumption (the rest must match). The
# strategy may: the global batch, and so the training, is the same on any number of replicas.
_RESUMABLE_CHANGES = {"steps", "epochs", "mlflow", "mlflow_experiment", "jit_compile", "strategy", "devices"}


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
          strategy="default", devices=None, verbose=1):
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
        strategy: ``"default"`` | ``"one-device"`` | ``"mirrored"`` | ``"multi-worker"``, or a
            ``tf.distribute.Strategy`` (see :func:`~keras_transformers.training.distribute.make_strategy`);
            ``batch_size`` is the global batch, split across the replicas. A name is turned
            into a strategy first thing, before TensorFlow runs an op (multi-worker needs it).
        devices: for ``"mirrored"``, e.g. ``["GPU:0", "GPU:1"]`` (``["CPU:0", "CPU:1"]``: two
            logical devices on the CPU).

    Returns:
        A dict: ``out``, ``model`` (path), ``epochs`` (finished), ``steps``, ``metrics`` (the
        last epoch's row), ``interrupted``, ``curves`` (path or None), ``mlflow_run_id``.
    """
    if task not in TASKS:
        raise JobError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    strategy_name = strategy if isinstance(strategy, str) else type(strategy).__name__
    strategy = make_strategy(strategy, devices) if isinstance(strategy, str) else strategy
    chief = is_chief(strategy)
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
                "jit_compile": jit_compile, "strategy": strategy_name, "devices": devices}
    resuming = _check_resume(out, settings)
    run_dir = out  # read from: the run's settings, tokenizer and backup
    if chief:
        os.makedirs(out, exist_ok=True)
    else:  # write to: a scratch directory of this worker's (see the module docstring)
        resolver = strategy.cluster_resolver
        out = tempfile.mkdtemp(prefix=f"keras_transformers-train-{resolver.task_type}-{resolver.task_id}-")
        mlflow = None
    keras.utils.set_random_seed(seed)

    train_data, count, label_names = read_examples(task, data)
    if task == "tagger" and validation:
        from keras_transformers.data import conll_tags

        label_names = conll_tags(data + validation)
    validation_data = read_examples(task, validation, label_names)[0] if validation else None

    tokenizer_dir = os.path.join(out, TOKENIZER_DIR)
    run_tokenizer_dir = os.path.join(run_dir, TOKENIZER_DIR)
    hf, pretrained = None, None
    if from_pretrained:
        from keras_transformers.convert import from_huggingface

        with strategy.scope():  # the weights are created here
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
            raise JobError("--from-pretrained: causal-lm needs a decoder checkpoint (GPT-2, Llama, Mistral, Qwen2, Mixtral)")
        if task == "seq2seq" and not isinstance(pretrained, Seq2Seq):
            raise JobError("--from-pretrained: seq2seq needs an encoder-decoder checkpoint (BART)")
    else:
        if resuming and os.path.exists(os.path.join(run_tokenizer_dir, "tokenizer.json")):
            setup = load_tokenizer(run_tokenizer_dir)
        else:  # deterministic: every worker trains the chief's tokenizer
            setup = train_tokenizer(tokenizer, _texts(task, train_data), vocabulary_size, tokenizer_dir)
        config = model_config(task, preset, overrides, setup.vocabulary_size, sequence_length, setup.pad_id)
    with strategy.scope():
        model = build_model(task, setup, config, sequence_length, label_names, pretrained, hf)

    batches_per_pass = max(1, math.ceil(count / batch_size))
    if steps:
        total_epochs = math.ceil(steps / batches_per_pass)
        steps_per_epoch = math.ceil(steps / total_epochs)
    else:
        total_epochs, steps_per_epoch = epochs or DEFAULT_EPOCHS, batches_per_pass
    with strategy.scope():
        model.compile(optimizer=_optimizer(learning_rate, total_epochs * steps_per_epoch),
                      jit_compile=jit_compile)
        model.build(None)
    # Global batches, split by Keras across the replicas. Under multi-worker, DATA sharding
    # gives worker i the i-th part of every global batch: the workers together train on
    # exactly the batches one device would (the shuffle's seed is the same on every worker).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train_batches = _batched(task, train_data.shuffle(count, seed=seed, reshuffle_each_iteration=True).repeat(),
                             batch_size).with_options(options)
    validation_batches = (_batched(task, validation_data, batch_size).with_options(options)
                          if validation_data is not None else None)

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
    tracked = [EpochClock(),
               keras.callbacks.CSVLogger(metrics_path, append=True),
               keras.callbacks.ModelCheckpoint(os.path.join(out, CHECKPOINT_DIR, "epoch-{epoch:03d}.keras"))]
    if tracking is not None:
        import mlflow.keras

        tracked.append(mlflow.keras.MlflowCallback())
    # Last: the epoch is checkpointed for resuming only once it is logged everywhere (a kill in
    # between repeats the epoch; read_metrics keeps its later row).
    # (Ours: written whole and published atomically, by the chief alone; every worker resumes
    # from the run directory's backup.)
    tracked.append(BackupAndRestore(os.path.join(run_dir, BACKUP_DIR), save_freq="epoch",
                                    delete_checkpoint=False, double_checkpoint=True))
    callbacks = [stop, FinishedEpochsOnly(stop, tracked)]
    try:
        import tensorboard  # noqa: F401  (tf.summary writes nothing without it)

        callbacks.insert(1, keras.callbacks.TensorBoard(os.path.join(out, LOG_DIR)))
    except ImportError:
        print("Note: no TensorBoard logs (the tensorboard package is not installed: pip install tensorboard).")

    replicas = (f", {strategy.num_replicas_in_sync} replicas ({strategy_name})"
                if strategy.num_replicas_in_sync > 1 or strategy_name not in ("default", "one-device") else "")
    print(f"Training a {model.count_params():,}-parameter {type(model).__name__} ({task}, {count:,} examples, "
          f"{setup.kind} tokenizer of {model.config.vocab_size:,} ids): {total_epochs} epoch(s) of "
          f"{steps_per_epoch} steps, batch {batch_size}{replicas}, into {run_dir}.", flush=True)
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
    save_model(model, os.path.join(out, MODEL_FILE), strategy)  # atomic; non-chiefs: scratch
    trained_steps = int(model.optimizer.iterations.numpy())
    result = {"out": run_dir, "model": os.path.join(run_dir, MODEL_FILE), "epochs": finished,
              "steps": trained_steps, "metrics": rows[-1] if rows else {}, "interrupted": stop.interrupted,
              "curves": None, "mlflow_run_id": None}
    if not chief:
        shutil.rmtree(out, ignore_errors=True)
        print(f"Worker {strategy.cluster_resolver.task_id}: {finished} epoch(s) trained; the chief saved the "
              f"model in {run_dir}.", flush=True)
        return result
    curves = plot_curves(rows, os.path.join(out, CURVES_FILE), f"{task}: {os.path.basename(os.path.abspath(out))}")
    if curves is None:
        print('Note: no curves.png (matplotlib is not installed: pip install "keras_transformers[benchmarks]").')
    record = {**config_record, "finished_epochs": finished, "steps": trained_steps,
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
    return {**result, "curves": curves, "mlflow_run_id": mlflow_run_id}
