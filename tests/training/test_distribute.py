"""keras_transformers.training.distribute on one device: who the chief is, strategy names, and
BackupAndRestore's on-disk protocol (one whole state published by an atomic pointer; an
interrupted fit resumes at the epoch and ends with the uninterrupted run's weights). The
multi-worker side is in tests/distributed/test_multiworker.py."""

import json
import os

import keras
import numpy as np
import pytest

import keras_transformers as kt
from keras_transformers.training.distribute import (
    BackupAndRestore, is_chief, make_strategy, save_model, task_is_chief)


@pytest.mark.parametrize("task_type, task_id, cluster, chief", [
    (None, None, None, True),  # no cluster
    ("worker", 0, {"worker": ["a:1", "b:1"]}, True),  # worker 0 of a cluster without a chief
    ("worker", 1, {"worker": ["a:1", "b:1"]}, False),
    ("chief", 0, {"chief": ["c:1"], "worker": ["a:1"]}, True),
    ("worker", 0, {"chief": ["c:1"], "worker": ["a:1"]}, False),  # the chief task exists
    ("evaluator", 0, {"worker": ["a:1"]}, False),
])
def test_task_is_chief(task_type, task_id, cluster, chief):
    assert task_is_chief(task_type, task_id, cluster) is chief


def test_make_strategy_names_and_errors(monkeypatch):
    assert is_chief(make_strategy("default"))
    assert make_strategy("one-device").num_replicas_in_sync == 1
    with pytest.raises(ValueError, match="Unknown strategy 'mirror'.*multi-worker"):
        make_strategy("mirror")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs TF_CONFIG"):
        make_strategy("multi-worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="not JSON with a 'cluster' key"):
        make_strategy("multi-worker")
    # Logical CPU devices can only be made before TensorFlow starts (it has, in this process).
    with pytest.raises(ValueError, match=r"devices=\['CPU:0', 'CPU:3'\]: this process has 1 CPU device\(s\)"):
        make_strategy("mirrored", ["CPU:0", "CPU:3"])


def _model():
    keras.utils.set_random_seed(0)
    model = kt.CausalLM(kt.TransformerConfig.from_preset("tiny", vocab_size=32, num_layers=1, dropout=0.0,
                                                         attention_dropout=0.0))
    model.compile(optimizer=keras.optimizers.Adam(0.01), jit_compile=False)
    return model


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("interrupted")


def test_backup_and_restore_resumes_at_the_epoch_with_the_uninterrupted_weights(tmp_path):
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 32, (8, 9)).astype("int32")
    data = ({"token_ids": ids[:, :-1], "padding_mask": np.ones((8, 8), "int32")}, ids[:, 1:])
    dataset = __import__("tensorflow").data.Dataset.from_tensor_slices(data).batch(4)
    backup = str(tmp_path / "backup")

    uninterrupted = _model()
    uninterrupted.fit(dataset, epochs=2, verbose=0)

    model = _model()
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(dataset, epochs=2, verbose=0, callbacks=[BackupAndRestore(backup), _Interrupt()])
    # One whole state, named by the pointer; no temporaries.
    with open(os.path.join(backup, "latest")) as f:
        state = f.read().strip()
    assert sorted(os.listdir(backup)) == ["latest", state]
    assert sorted(os.listdir(os.path.join(backup, state))) == ["latest.weights.h5", "training_metadata.json"]
    with open(os.path.join(backup, state, "training_metadata.json")) as f:
        assert json.load(f) == {"epoch": 1, "batch": 0}

    resumed = _model()  # a fresh process would build the model again, as here
    history = resumed.fit(dataset, epochs=2, verbose=0, callbacks=[BackupAndRestore(backup)])
    assert len(history.history["loss"]) == 1  # epoch 2 only
    for a, b in zip(resumed.weights, uninterrupted.weights):  # Adam's moments restored too
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    assert not os.path.exists(backup)  # removed at the end of training
    # A later fit of the same model runs all its epochs (Keras alone would resume at epoch 2 again).
    assert len(resumed.fit(dataset, epochs=2, verbose=0).history["loss"]) == 2

    path = str(tmp_path / "model.keras")
    assert save_model(resumed, path) is True
    assert [name for name in os.listdir(tmp_path) if name.endswith(".keras")] == ["model.keras"]


def test_an_integer_save_freq_warns_that_resume_is_per_epoch(tmp_path):
    with pytest.warns(UserWarning, match="exact only with save_freq='epoch'"):
        BackupAndRestore(str(tmp_path), save_freq=2)


class _InterruptAtTwo(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise RuntimeError("interrupted")


def test_double_checkpoint_falls_back_to_the_previous_state_when_the_latest_is_unreadable(tmp_path):
    import tensorflow as tf

    ids = np.random.default_rng(1).integers(1, 32, (4, 9)).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices(
        ({"token_ids": ids[:, :-1], "padding_mask": np.ones((4, 8), "int32")}, ids[:, 1:])).batch(4)
    backup = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="interrupted"):
        _model().fit(dataset, epochs=3, verbose=0,
                     callbacks=[BackupAndRestore(backup, double_checkpoint=True), _InterruptAtTwo()])
    with open(os.path.join(backup, "latest")) as f:
        latest = f.read().strip()
    with open(os.path.join(backup, "previous")) as f:
        previous = f.read().strip()
    assert sorted(os.listdir(backup)) == sorted(["latest", "previous", latest, previous])
    with open(os.path.join(backup, latest, "latest.weights.h5"), "wb") as f:
        f.write(b"torn")  # the latest state's weights unreadable
    history = _model().fit(dataset, epochs=3, verbose=0, callbacks=[BackupAndRestore(backup, double_checkpoint=True)])
    assert len(history.history["loss"]) == 2  # resumed from the previous state: after epoch 1


def test_a_one_replica_mirrored_strategy_trains_with_the_default_compile():
    """MirroredStrategy's optimizer update is a merge_call, which the nested XLA step cannot
    hold even with one replica: the default compile() falls back to a graph, with a warning."""
    import tensorflow as tf

    ids = np.random.default_rng(0).integers(1, 32, (8, 9)).astype("int32")
    data = tf.data.Dataset.from_tensor_slices(
        ({"token_ids": ids[:, :-1], "padding_mask": np.ones((8, 8), "int32")}, ids[:, 1:])).batch(8)
    with tf.distribute.MirroredStrategy(["CPU:0"]).scope():
        model = kt.CausalLM(kt.TransformerConfig.from_preset("tiny", vocab_size=32, num_layers=1))
        model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    with pytest.warns(UserWarning, match=r"falls back to a TensorFlow graph \(no XLA\) under MirroredStrategy "
                                         r"with 1 replica"):
        history = model.fit(data, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
