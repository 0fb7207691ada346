"""``keras-transformers train --strategy`` (issue 15), run as users run it: the installed
command in fresh processes. The same small causal LM is trained three ways from one seed, on
one device (XLA on, the default), on 2 logical CPU devices (``--strategy mirrored --devices
CPU:0,CPU:1``) and by a 2-worker cluster on localhost (``--strategy multi-worker``, one
command per worker, ``TF_CONFIG`` set): the losses of every epoch and the final weights agree,
and in the cluster the chief alone wrote the run directory.

This run is the CLI's own: a shuffled, repeated dataset of text and AdamW with ``clipnorm``. It
caught two ways Keras 3 trains differently under a strategy: gradients clipped per replica
before they are summed, and a shuffled dataset starting on its second order (the first
iterator is spent on building the model).

Tolerance: the distributed runs fall back from XLA to TensorFlow graphs, and sum each global
batch's gradients in two halves: another order of float32 additions. Measured: losses within
2.4e-7, weights within 1.2e-8 after 10 AdamW steps; we allow 1e-5."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tests.distributed.cluster import Cluster, free_ports

SCRIPT = Path(sys.executable).parent / "keras-transformers"
TOLERANCE = 1e-5
TRAIN = ["train", "causal-lm", "--preset", "tiny", "--set", "num_layers=1", "--set", "dropout=0",
         "--set", "attention_dropout=0", "--epochs", "2", "--batch-size", "8", "--sequence-length", "16"]


def losses(run):
    with open(os.path.join(run, "metrics.csv"), newline="") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def weights(run):
    import keras

    import keras_transformers  # noqa: F401  (registers the classes the file names)

    model = keras.saving.load_model(os.path.join(run, "model.keras"))
    return {w.path: w.numpy() for w in model.weights}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_strategy")
    data = root / "lines.txt"
    words = "the cat sat on a mat dog ran to the park".split()
    rng = np.random.default_rng(0)
    data.write_text("\n".join(" ".join(rng.choice(words, rng.integers(2, 7))) for _ in range(40)) + "\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for name, extra in (("one", []), ("mirrored", ["--strategy", "mirrored", "--devices", "CPU:0,CPU:1"])):
        result = subprocess.run([str(SCRIPT), *TRAIN, "--data", str(data), "--out", str(root / name), *extra],
                                capture_output=True, text=True, timeout=420, env=env)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        if name == "mirrored":
            assert "2 replicas (mirrored)" in result.stdout
    cluster = Cluster(free_ports(2), None, str(root), command=[
        str(SCRIPT), *TRAIN, "--data", str(data), "--out", str(root / "multi"), "--strategy", "multi-worker"])
    try:
        cluster.start(0).wait(timeout=420)
    finally:
        cluster.kill()
    return root


@pytest.mark.parametrize("name", ["mirrored", "multi"])
def test_distributed_training_from_the_command_line_equals_one_device(runs, name):
    reference, distributed = losses(runs / "one"), losses(runs / name)
    assert len(distributed) == len(reference) == 2
    assert np.abs(np.subtract(distributed, reference)).max() < TOLERANCE, (distributed, reference)
    one, other = weights(runs / "one"), weights(runs / name)
    assert one.keys() == other.keys()
    assert max(float(np.abs(one[k] - other[k]).max()) for k in one) < TOLERANCE


def test_the_chief_alone_writes_the_run_directory(runs):
    run = runs / "multi"
    config = json.loads((run / "config.json").read_text())
    assert config["run"]["strategy"] == "multi-worker" and config["finished_epochs"] == 2
    assert not [name for name in os.listdir(run) if ".tmp-" in name]
    chief, worker = (runs / "run0-worker0.log").read_text(), (runs / "run0-worker1.log").read_text()
    assert "Saved " in chief and "the chief saved the model" in worker
