"""Training's callbacks (Ctrl-C, finished epochs only, epoch time) and its metrics.csv and curves."""

import csv
import os
import time

import keras


class StopOnInterrupt(keras.callbacks.Callback):
    """Ctrl-C ends training after the current step, not wherever the signal lands.

    A ``KeyboardInterrupt`` raised inside ``fit`` can be lost: one that arrives while
    TensorFlow runs a step or reads the dataset may never reach Python, and training goes on.
    Within :meth:`catching_ctrl_c`, the first Ctrl-C (or SIGTERM) only sets
    :attr:`interrupted`, and training stops at the next step's end; a second Ctrl-C raises
    ``KeyboardInterrupt`` as usual.
    """

    def __init__(self):
        super().__init__()
        self.interrupted = False

    def _on_ctrl_c(self, signum, frame):
        import signal

        self.interrupted = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the next one interrupts at once
        print("\nCtrl-C: stopping after this step (press again to stop now).", flush=True)

    def catching_ctrl_c(self):
        import contextlib
        import signal
        import threading

        @contextlib.contextmanager
        def handlers():
            if threading.current_thread() is not threading.main_thread():  # only it may set handlers
                yield
                return
            previous = signal.signal(signal.SIGINT, self._on_ctrl_c)
            try:
                yield
            finally:
                signal.signal(signal.SIGINT, previous)

        return handlers()

    def on_train_batch_end(self, batch, logs=None):
        if self.interrupted:
            self.model.stop_training = True


class FinishedEpochsOnly(keras.callbacks.Callback):
    """Forwards every hook to ``callbacks`` except the ``on_epoch_end`` of an epoch that Ctrl-C
    cut short (Keras calls it anyway): that epoch is not checkpointed, logged or tracked as
    finished, so a rerun trains it again."""

    def __init__(self, stop, callbacks):
        super().__init__()
        self.stop = stop
        self.callbacks = list(callbacks)

    def set_model(self, model):
        super().set_model(model)
        for callback in self.callbacks:
            callback.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        for callback in self.callbacks:
            callback.set_params(params)

    def on_epoch_end(self, epoch, logs=None):
        if not self.stop.interrupted:
            for callback in self.callbacks:
                callback.on_epoch_end(epoch, logs)

    def __getattribute__(self, name):
        if name.startswith("on_") and name != "on_epoch_end":
            callbacks = object.__getattribute__(self, "callbacks")

            def forward(*args, **kwargs):
                for callback in callbacks:
                    getattr(callback, name)(*args, **kwargs)

            return forward
        return object.__getattribute__(self, name)


class EpochClock(keras.callbacks.Callback):
    """Each epoch's wall time in its logs (``epoch_time_s``), so metrics.csv keeps it."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_time_s"] = time.perf_counter() - self.start


def read_metrics(path):
    """The rows of metrics.csv as dicts of floats, one per epoch (a repeated epoch, from a run
    killed between logging and checkpointing it, keeps its last row)."""
    if not os.path.exists(path):
        return []
    rows = {}
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            values = {key: float(value) for key, value in row.items() if value not in ("", "NA", None)}
            if "epoch" in values:
                rows[int(values["epoch"])] = values
    return [rows[epoch] for epoch in sorted(rows)]


def _rewrite_metrics(path, rows):
    if not rows:
        return
    keys = list(dict.fromkeys(key for row in rows for key in row))
    with open(path + ".tmp", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=keys)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: (int(value) if key == "epoch" else value) for key, value in row.items()})
    os.replace(path + ".tmp", path)


def plot_curves(rows, path, title, metrics=None):
    """One panel per metric (``metrics``, default every training metric in ``rows``), training
    (``name``) and validation (``val_name``) per epoch. Returns ``path``, or ``None`` without
    matplotlib. The benchmarks' anchor scripts draw their curves with it too."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = metrics if metrics is not None else [
        key for key in (rows[0] if rows else {}) if key not in ("epoch", "epoch_time_s", "learning_rate")
        and not key.startswith("val_")]
    figure, axes = plt.subplots(1, max(1, len(names)), figsize=(5 * max(1, len(names)), 3.6), squeeze=False)
    epochs = [int(row["epoch"]) + 1 for row in rows]
    for axis, name in zip(axes[0], names):
        for key, label in ((name, "train"), (f"val_{name}", "validation")):
            values = [row.get(key) for row in rows]
            if any(value is not None for value in values):
                axis.plot(epochs, values, marker="o", label=label)
        axis.set_xlabel("epoch")
        axis.set_ylabel(name)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
