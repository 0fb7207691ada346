"""Helpers for ``model.fit`` under ``tf.distribute``: a strategy from a name, who the chief is,
chief-only atomic saving, and a ``BackupAndRestore`` that is safe with several workers.

Keras 3's ``keras.callbacks.BackupAndRestore`` knows nothing of workers: under
``MultiWorkerMirroredStrategy`` every worker writes ``latest.weights.h5`` and
``training_metadata.json`` into the same ``backup_dir`` (two writers of one file on a shared
filesystem), writes them in place (a worker killed mid-write leaves a torn file), as two
files (a kill between them pairs epoch k+1's weights with epoch k's counter), and every worker
deletes the directory at the end. :class:`BackupAndRestore` here keeps its interface and
fixes those four: the chief alone writes to ``backup_dir``; the other workers write to a
temporary directory of their own (every worker must still *save*, because reading a
variable under the strategy may be a collective op all workers join, as TensorFlow's
multi-worker guide recommends); each state is written whole into a fresh directory, then
published by an atomic rename of a one-line pointer file; every worker restores from the
chief's ``backup_dir``, which therefore must be on a filesystem all workers see (one host,
NFS, GCS, a Kubernetes volume).

Resume is exact at epoch boundaries (``save_freq="epoch"``, the default): the weights, the
optimizer state and the epoch counter are restored, and the next epoch starts with the first
batch of an unshuffled (or deterministically re-created) dataset. Keras 3 (3.15) restores
only the epoch number, not the batch: with an integer ``save_freq`` the interrupted epoch is
replayed from its first batch on top of mid-epoch weights, so the batches before the last
save are trained twice. We warn about that rather than pretend otherwise.

Example (one process per worker, ``TF_CONFIG`` set by the launcher)::

    strategy = make_strategy("multi-worker")          # first thing: before any TF op
    with strategy.scope():
        model = kt.CausalLM(config)
        model.compile(optimizer="adam")
    model.fit(dataset, epochs=3, callbacks=[BackupAndRestore("/shared/run1/backup")])
    save_model(model, "/shared/run1/model.keras")      # the chief writes, atomically
"""

import json
import os
import shutil
import tempfile
import time
import warnings

import keras
import tensorflow as tf

from keras_transformers.models.multi_worker import install_multi_worker_fix
from keras_transformers.models.task import ShapeFreeBuild

STRATEGY_NAMES = ("default", "one-device", "mirrored", "multi-worker")
POINTER = "latest"  # one line: the name of the directory that holds the last whole state
STATE_PREFIX = "state-"


def make_strategy(name, devices=None):
    """A ``tf.distribute`` strategy from its name.

    Args:
        name: ``"default"`` (no distribution), ``"one-device"`` (the first GPU, else CPU),
            ``"mirrored"`` (every local GPU, or ``devices``) or ``"multi-worker"``
            (``MultiWorkerMirroredStrategy`` over the cluster in ``TF_CONFIG``: create it
            before TensorFlow runs anything, or its collectives cannot be configured).
        devices: for ``"mirrored"``, e.g. ``["GPU:0", "GPU:1"]``; CPU names beyond the
            first (``["CPU:0", "CPU:1"]``) split the CPU into that many logical devices, one
            replica each (the same cores: for tests and learning, not for speed).

    Returns:
        A ``tf.distribute.Strategy``. Raises ``ValueError`` for an unknown name, and for
        ``"multi-worker"`` without a ``TF_CONFIG`` naming a cluster.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one-device":
        return tf.distribute.OneDeviceStrategy("GPU:0" if tf.config.list_logical_devices("GPU") else "CPU:0")
    if name == "mirrored":
        if devices:
            devices = [str(d) for d in devices]
            _make_logical_cpus(devices)
        return tf.distribute.MirroredStrategy(devices or None)
    if name == "multi-worker":
        config = os.environ.get("TF_CONFIG")
        try:
            cluster = json.loads(config)["cluster"] if config else None
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"TF_CONFIG is not JSON with a 'cluster' key: {config!r}") from None
        if not cluster:
            raise ValueError("The 'multi-worker' strategy needs TF_CONFIG, e.g. "
                             '{"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
                             '"task": {"type": "worker", "index": 0}}; it is not set.')
        install_multi_worker_fix()
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown strategy {name!r}; expected one of {', '.join(STRATEGY_NAMES)}.")


def _cpu_index(device):
    """The ``k`` of a device name ``CPU:k`` (``/cpu:k``, ``/device:CPU:k``), else None."""
    parts = device.strip("/").split(":")
    if len(parts) >= 2 and parts[-2].upper().endswith("CPU") and parts[-1].isdigit():
        return int(parts[-1])
    return None


def _make_logical_cpus(devices):
    """Split the first physical CPU into as many logical CPU devices as ``devices`` names
    (``CPU:1`` needs two), so that ``MirroredStrategy(["CPU:0", "CPU:1"])`` runs on a machine
    without accelerators: each logical device is one replica, sharing the same cores (a
    way to test and learn distribution, not a speed-up). This must happen before TensorFlow
    runs its first op."""
    needed = max([index + 1 for index in map(_cpu_index, devices) if index is not None], default=0)
    if needed <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    configured = tf.config.get_logical_device_configuration(cpu)
    if configured is not None and len(configured) >= needed:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * needed)
    except RuntimeError:
        raise ValueError(
            f"devices={devices}: this process has {len(configured or [None])} CPU device(s), and more can "
            "be made only before TensorFlow runs its first op; create the strategy first thing") from None


def task_is_chief(task_type, task_id, cluster_spec=None):
    """Whether the task ``(task_type, task_id)`` is the chief: the ``"chief"`` task, else worker
    0 of a cluster without one, else a process outside any cluster (``task_type`` None)."""
    if task_type is None or task_type == "chief":
        return True
    has_chief = bool(cluster_spec and "chief" in cluster_spec)
    return task_type == "worker" and task_id == 0 and not has_chief


def is_chief(strategy=None):
    """Whether this process is the chief of ``strategy`` (default: the current one)."""
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return True
    spec = resolver.cluster_spec().as_dict() if resolver.cluster_spec() else {}
    return task_is_chief(resolver.task_type, resolver.task_id, spec)


def _worker_temporary(strategy, purpose):
    resolver = getattr(strategy, "cluster_resolver", None)
    task = f"{getattr(resolver, 'task_type', None)}-{getattr(resolver, 'task_id', None)}"
    return tempfile.mkdtemp(prefix=f"keras_transformers-{purpose}-{task}-")


def save_model(model, filepath, strategy=None):
    """``model.save(filepath)`` written by the chief only, atomically.

    Every worker must call it (reading the variables may be a collective op). The chief
    writes a hidden ``.<name>.tmp-<pid>.keras`` beside ``filepath`` and renames it onto
    ``filepath`` (``os.replace``: a reader sees the old file or the new one, never half of
    one); the other workers save into a temporary directory and delete it.
    Returns whether this process wrote ``filepath``.
    """
    strategy = strategy or model.distribute_strategy
    if not is_chief(strategy):
        scratch = _worker_temporary(strategy, "save")
        try:
            model.save(os.path.join(scratch, os.path.basename(filepath)))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return False
    directory, name = os.path.split(os.path.abspath(filepath))
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".{name}.tmp-{os.getpid()}.keras")
    try:
        model.save(temporary)
        os.replace(temporary, filepath)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return True


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """``keras.callbacks.BackupAndRestore`` that is safe with several workers (see the module
    docstring): the chief alone writes ``backup_dir``, each state whole and published
    atomically; every worker restores from ``backup_dir``.

    Layout of ``backup_dir``: ``state-<n>/`` (``latest.weights.h5`` with the model's and the
    optimizer's variables, ``training_metadata.json`` with the epoch and batch) and
    ``latest``, whose one line names the directory of the last whole state. A kill at any
    moment leaves either the previous state or the new one published.

    Args: as ``keras.callbacks.BackupAndRestore``. ``double_checkpoint=True`` keeps the
    previous state directory as a fall-back when the latest one cannot be read.
    """

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint=False, delete_checkpoint=True):
        super().__init__(backup_dir, save_freq=save_freq, double_checkpoint=double_checkpoint,
                         delete_checkpoint=delete_checkpoint)
        if save_freq != "epoch":
            warnings.warn(
                f"BackupAndRestore(save_freq={save_freq}): Keras restores the epoch, not the batch; "
                "a resumed run replays the interrupted epoch from its first batch on top of the "
                "mid-epoch weights. Resume is exact only with save_freq='epoch'.", stacklevel=2)
        self._saves = 0
        self._scratch = None

    # --- where this process writes -------------------------------------------------------------
    def _write_dir(self):
        strategy = self.model.distribute_strategy
        if is_chief(strategy):
            return self.backup_dir
        if self._scratch is None:
            self._scratch = _worker_temporary(strategy, "backup")
        return self._scratch

    @staticmethod
    def _published(directory):
        """The state directories of ``directory``, newest first, that the pointer may name."""
        pointer = os.path.join(directory, POINTER)
        names = []
        if os.path.exists(pointer):
            with open(pointer) as f:
                names.append(f.read().strip())
        return [os.path.join(directory, name) for name in names]

    def _save_model(self):
        directory = self._write_dir()
        os.makedirs(directory, exist_ok=True)
        self._saves += 1
        # Unique across restarts too: a replayed (epoch, batch) never meets a published name.
        name = (f"{STATE_PREFIX}{self._current_epoch:06d}-{self._last_batch_seen:06d}-"
                f"{time.time_ns()}-{os.getpid()}-{self._saves}")
        temporary = os.path.join(directory, f".{name}.tmp-{os.getpid()}")
        shutil.rmtree(temporary, ignore_errors=True)
        os.makedirs(temporary)
        self.model.save_weights(os.path.join(temporary, "latest.weights.h5"), overwrite=True)
        with open(os.path.join(temporary, "training_metadata.json"), "w") as f:
            json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, os.path.join(directory, name))
        previous = self._published(directory)
        pointer_temporary = os.path.join(directory, f".{POINTER}.tmp-{os.getpid()}")
        with open(pointer_temporary, "w") as f:
            f.write(name + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(pointer_temporary, os.path.join(directory, POINTER))  # the publishing step
        keep = {name}
        if self.double_checkpoint:
            keep.update(os.path.basename(p) for p in previous)
            previous_temporary = os.path.join(directory, f".previous.tmp-{os.getpid()}")
            with open(previous_temporary, "w") as f:
                f.write("".join(os.path.basename(p) + "\n" for p in previous))
            os.replace(previous_temporary, os.path.join(directory, "previous"))
        for entry in os.listdir(directory):  # older states, and temporaries of killed saves
            path = os.path.join(directory, entry)
            if entry.startswith(STATE_PREFIX) and entry not in keep or ".tmp-" in entry:
                shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)

    def on_train_begin(self, logs=None):
        candidates = self._published(self.backup_dir)
        previous = os.path.join(self.backup_dir, "previous")
        if self.double_checkpoint and os.path.exists(previous):
            with open(previous) as f:
                candidates += [os.path.join(self.backup_dir, line.strip()) for line in f if line.strip()]
        error = None
        for state in candidates:
            try:
                self._restore(state)
                return
            except OSError as e:  # unreadable: try the previous state, if kept
                error = e
        if error is not None:
            raise error

    def _restore(self, state):
        if not self.model.built:
            if not isinstance(self.model, ShapeFreeBuild):  # Keras' own rule for other models
                raise ValueError("To use BackupAndRestore, the model must be built before fit(): "
                                 "call it on a batch first.")
            self.model.build(None)  # our task models create every weight without a shape
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(state, "latest.weights.h5"))
        with open(os.path.join(state, "training_metadata.json")) as f:
            self.model._initial_epoch = json.load(f)["epoch"]

    def on_train_end(self, logs=None):
        # Keras never clears the epoch it resumed at: a later fit of the same model would
        # start there too, skipping epochs.
        self.model._initial_epoch = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
        if self.delete_checkpoint and is_chief(self.model.distribute_strategy) and os.path.exists(self.backup_dir):
            shutil.rmtree(self.backup_dir)


