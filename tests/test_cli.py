"""The `keras-transformers` command: the quickstart runs end to end, in a tiny setting."""

import ast
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np

from keras_transformers import cli
from keras_transformers.data import tiny_shakespeare
from keras_transformers.quickstart import CharacterVocabulary, language_model_windows


def test_console_script_is_installed():
    assert (Path(sys.executable).parent / "keras-transformers").exists()


def _user_environment():
    return {**{k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}, "PYTHONUNBUFFERED": "1"}


def test_quickstart_trains_saves_samples_then_generates_and_exports_a_text_signature(tmp_path):
    """README's first commands: quickstart --save, generate from its model, export it, and run
    the export's text signature with saved_model_cli (TensorFlow alone)."""
    script = str(Path(sys.executable).parent / "keras-transformers")
    result = subprocess.run([script, "quickstart", "--steps", "12", "--steps-per-epoch", "6", "--sample-length",
                             "40", "--save", "char_gpt.keras"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path, env=_user_environment())
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Epoch 2/2" in result.stdout
    assert "(12 steps): validation loss 3.496" in result.stdout  # the numbers of the ids-only quickstart
    assert not re.search(r"^[IWE]\d{4} |cuInit", result.stderr, re.MULTILINE), result.stderr[-2000:]
    sample = result.stdout.split("--- sample ---")[1].split("--------------")[0]
    assert sample.startswith("\n") and sample.endswith("\n")  # the "\n" prompt ... the closing line
    assert len(sample) == 1 + 40 + 1
    model = keras.saving.load_model(tmp_path / "char_gpt.keras")
    assert model.config.vocab_size == 65 and model.preprocessor.tokenizer.vocabulary_size() == 65

    # Past the 64-character context: the window slides (uncached generation), no stop token.
    result = subprocess.run([script, "generate", "char_gpt.keras", "ROMEO:", "--max-new-tokens", "80",
                             "--temperature", "0.8", "--seed", "1"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path, env=_user_environment())
    assert result.returncode == 0 and result.stderr == "", result.stderr[-3000:]
    continuation = result.stdout[:-1]
    assert len(continuation) == 80 and set(continuation) <= set(tiny_shakespeare())

    result = subprocess.run([script, "export", "savedmodel", "char_gpt.keras", "serving", "--max-new-tokens", "20",
                             "--no-verify"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path, env=_user_environment())
    assert result.returncode == 0 and result.stderr == "", result.stderr[-3000:]
    served = subprocess.run(
        [str(Path(sys.executable).parent / "saved_model_cli"), "run", "--dir", "serving/1", "--tag_set", "serve",
         "--signature_def", "serving_default", "--input_exprs", 'text=["ROMEO:"]'],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert served.returncode == 0, served.stderr[-3000:]
    text = re.search(r"Result for output key generated_text:\n\[(b'.*'|b\".*\")\]", served.stdout, re.DOTALL)
    assert text, served.stdout[-2000:]
    from keras_transformers import jobs

    expected = jobs.generate(model, ["ROMEO:"], max_new_tokens=20)[0]  # greedy, as exported
    assert len(expected) == 20 and ast.literal_eval(text.group(1)).decode() == expected
    # In Python too: the text has no end token (end_id=None), so no newline stops it.
    assert model.preprocessor.end_id is None
    assert model.generate_text(["ROMEO:"], max_new_tokens=20) == [expected]


def test_ctrl_c_keeps_the_model_trained_so_far(tmp_path):
    saved = tmp_path / "interrupted.keras"
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_transformers.cli", "quickstart", "--steps", "100000",
         "--steps-per-epoch", "5", "--sample-length", "10", "--save", str(saved)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"})
    output = ""
    for line in process.stdout:  # wait until a first epoch has trained, then press Ctrl-C
        output += line
        if line.startswith("Epoch 2/"):
            time.sleep(0.5)
            process.send_signal(signal.SIGINT)
            break
    output += process.stdout.read()
    assert process.wait(timeout=120) == 0, output[-3000:]
    assert "Interrupted after" in output and "validation loss" in output and "--- sample ---" in output
    assert keras.saving.load_model(saved).optimizer.iterations > 0


def test_bad_arguments_exit_with_a_message(capsys):
    try:
        cli.main(["quickstart", "--steps", "0"])
    except SystemExit as exit_:
        assert exit_.code == 2
    assert "must be a positive integer, got 0" in capsys.readouterr().err
    assert cli.main(["quickstart", "--save", "model.h5"]) == 2


def test_character_vocabulary_round_trip_and_windows():
    text = tiny_shakespeare()
    vocabulary = CharacterVocabulary(text)
    assert len(text) == 1_115_394 and len(vocabulary) == 65
    assert vocabulary.decode(vocabulary.encode(text[:500])) == text[:500]
    ids = vocabulary.encode(text[:5000])
    inputs, labels = next(iter(language_model_windows(ids, context=16, batch_size=4, seed=0)))
    assert inputs["token_ids"].shape == (4, 16) and labels.shape == (4, 16)
    # labels are the inputs shifted by one, and each window is a contiguous slice of the text
    np.testing.assert_array_equal(inputs["token_ids"][:, 1:], labels[:, :-1])
    row = inputs["token_ids"][0].numpy()
    start = next(i for i in range(len(ids) - 16) if (ids[i:i + 16] == row).all())
    assert labels[0, -1] == ids[start + 16]
