"""``keras-transformers export savedmodel|onnx MODEL.keras OUT``."""

import os
import shutil

import pytest
import tensorflow as tf

from keras_transformers import cli
from tests.export.models import build


def test_exports_a_saved_keras_model_both_ways(tmp_path, capsys):
    model = build("causal_lm")
    model.save(tmp_path / "lm.keras")
    cpp = ["--cpp-check"] if shutil.which("g++") else []
    assert cli.main(["export", "savedmodel", str(tmp_path / "lm.keras"), str(tmp_path / "serving"),
                     "--max-new-tokens", "5", "--num-beams", "2", *cpp]) == 0
    out = capsys.readouterr().out
    assert "serving/1, verified in a TensorFlow-only process" in out
    if cpp:
        assert "C++ LoadSavedModel + Session::Run matched Keras on 4 requests" in out
    served = tf.saved_model.load(str(tmp_path / "serving" / "1")).signatures["serving_default"]
    got = [t.decode() for t in served(text=tf.constant(["hello"]))["generated_text"].numpy()]
    assert got == model.generate_text(["hello"], max_new_tokens=5, num_beams=2)

    assert cli.main(["export", "onnx", str(tmp_path / "lm.keras"), str(tmp_path / "lm_onnx"), "--no-verify"]) == 0
    assert "decoder_step.onnx" in capsys.readouterr().out
    assert os.path.exists(tmp_path / "lm_onnx" / "onnx_generate.py")


def test_export_needs_a_keras_file(capsys):
    assert cli.main(["export", "onnx", "model.h5", "out"]) == 2
    assert "MODEL must be a .keras file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["export", "tflite", "m.keras", "out"])
