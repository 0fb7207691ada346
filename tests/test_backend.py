"""The package insists on the TensorFlow backend, with a clear error otherwise."""

import os
import subprocess
import sys


def run_import(backend):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-c", "import keras_transformers, keras; print(keras.backend.backend())"],
                          capture_output=True, text=True, env=env, timeout=120)


def test_another_backend_is_refused_by_name():
    result = run_import("jax")
    assert result.returncode != 0
    assert "needs the TensorFlow backend, but KERAS_BACKEND='jax'" in result.stderr


def test_tensorflow_backend_is_accepted():
    result = run_import("tensorflow")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "tensorflow"
