"""MultiWorkerMirroredStrategy with 2 worker processes on localhost (issue 15): the same
training as one device, and a cluster killed mid-epoch that resumes from the chief's last
backup and ends with the uninterrupted run's weights.

Every cluster here: free ports picked by the OS, each worker's output in a log file (no pipe
to fill), a deadline on every wait, and every worker killed in ``finally``.

Tolerances: the one-device run sums each step's gradient over all 8 rows at once; the
cluster sums two halves, then all-reduces them. Same numbers, another order of float32
additions: a few ulps per step (weights are O(1), float32 ulp ~1e-7). Measured: losses equal
to the bit, weights within 3e-8 after 6 SGD steps. We allow 1e-5: 100x that, and far below
what a wrong normalisation gives (the mean of per-replica means differs in the loss's second
decimal with these batches, whose halves hold 2 vs 8 and 8 vs 1 real tokens a row)."""

import json
import os
import signal
import time

import numpy as np
import pytest
from tests.distributed.cluster import Cluster, free_ports

TOLERANCE = 1e-5


def weights(path):
    with np.load(path) as f:
        return [f[name] for name in f.files]


def largest_difference(a, b):
    assert len(a) == len(b) and all(p.shape == q.shape for p, q in zip(a, b))
    return max(float(np.abs(p.astype(np.float64) - q).max()) for p, q in zip(a, b))


def results(out, stem):
    with open(os.path.join(out, f"{stem}.json")) as f:
        return json.load(f)


def train_cluster(out, models):
    cluster = Cluster(free_ports(2), ["--out", out, "--models", ",".join(models), "--epochs", "2",
                                      "--reference"], out)
    try:
        cluster.start(0).wait(timeout=420)
    finally:
        cluster.kill()
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_cluster(str(tmp_path_factory.mktemp("multiworker")), ["CausalLM"])


def check_equal_to_one_device(trained, model):
    cluster, reference = results(trained, f"{model}-worker0"), results(trained, f"{model}-reference")
    assert cluster["replicas"] == 2 and reference["replicas"] == 1
    assert np.abs(np.subtract(cluster["losses"], reference["losses"])).max() < TOLERANCE, (
        cluster["losses"], reference["losses"])
    assert results(trained, f"{model}-worker1")["losses"] == cluster["losses"]
    assert largest_difference(weights(os.path.join(trained, f"{model}-worker0.npz")),
                              weights(os.path.join(trained, f"{model}-reference.npz"))) < TOLERANCE
    # Mirrored: both workers apply the same all-reduced gradients.
    assert largest_difference(weights(os.path.join(trained, f"{model}-worker0.npz")),
                              weights(os.path.join(trained, f"{model}-worker1.npz"))) == 0.0


def check_the_chief_alone_writes_the_model_whole(trained, model):
    assert results(trained, f"{model}-worker0")["wrote_model"] is True
    assert results(trained, f"{model}-worker1")["wrote_model"] is False
    assert not [name for name in os.listdir(trained) if ".tmp-" in name]  # no temporary left
    # The .keras file, loaded on one device, holds the cluster's weights to the bit.
    assert largest_difference(weights(os.path.join(trained, f"{model}-loaded.npz")),
                              weights(os.path.join(trained, f"{model}-worker0.npz"))) == 0.0


def test_two_workers_train_a_causal_lm_as_one_device(trained):
    check_equal_to_one_device(trained, "CausalLM")


def test_the_chief_alone_writes_the_model_whole(trained):
    check_the_chief_alone_writes_the_model_whole(trained, "CausalLM")


@pytest.mark.slow
def test_two_workers_train_a_classifier_as_one_device(tmp_path):
    out = train_cluster(str(tmp_path), ["EncoderClassifier"])
    check_equal_to_one_device(out, "EncoderClassifier")
    check_the_chief_alone_writes_the_model_whole(out, "EncoderClassifier")


def wait_for_line(path, text, timeout, cluster):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and text in open(path).read():
            return
        if any(worker.poll() is not None for worker in cluster.workers):
            pytest.fail(f"a worker exited before {text!r}\n" + cluster.tail())
        time.sleep(0.2)
    pytest.fail(f"no {text!r} in {path} after {timeout} s\n" + cluster.tail())


@pytest.mark.slow
def test_a_killed_cluster_resumes_from_the_last_epoch_and_ends_as_an_uninterrupted_run(tmp_path):
    out, backup = str(tmp_path / "out"), str(tmp_path / "backup")
    ports = free_ports(2)
    command = ["--out", out, "--epochs", "3", "--optimizer", "adam", "--backup", backup,
               "--stall-once", str(tmp_path / "stalled-once"), "--reference"]
    first = Cluster(ports, command, str(tmp_path))
    try:
        first.start(0)
        # Two steps into epoch 2 (index 1), after epoch 1's backup: mid-epoch.
        wait_for_line(os.path.join(out, "worker0.progress"), "stalled", 420, first)
        with open(os.path.join(backup, "latest")) as f:
            state = f.read().strip()
        with open(os.path.join(backup, state, "training_metadata.json")) as f:
            assert json.load(f)["epoch"] == 1
        assert not os.path.exists(os.path.join(out, "CausalLM.keras"))
        first.workers[1].send_signal(signal.SIGKILL)  # one worker dies,
        first.workers[1].wait(timeout=30)
        first.workers[0].send_signal(signal.SIGKILL)  # then the other is killed
        first.workers[0].wait(timeout=30)
    finally:
        first.kill()
    progress = open(os.path.join(out, "worker0.progress")).read()
    assert "epoch 1 ends" not in progress and "epoch 2" not in progress

    second = Cluster(ports, command, str(tmp_path))  # the same command, the same ports
    try:
        second.start(1).wait(timeout=420)
    finally:
        second.kill()
    resumed, reference = results(out, "CausalLM-worker0"), results(out, "CausalLM-reference")
    assert resumed["epochs_run"] == 2 and reference["epochs_run"] == 3  # epochs 2 and 3 only
    assert np.abs(np.subtract(resumed["losses"], reference["losses"][1:])).max() < TOLERANCE
    final = weights(os.path.join(out, "CausalLM-worker0.npz"))
    assert largest_difference(final, weights(os.path.join(out, "CausalLM-reference.npz"))) < TOLERANCE
    assert largest_difference(final, weights(os.path.join(out, "CausalLM-loaded.npz"))) == 0.0
    assert not os.path.exists(backup)  # training finished: the chief removed its backup
