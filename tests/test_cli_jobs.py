"""``keras-transformers train / evaluate / generate / export``, end to end, the way users run them:
the installed console script in fresh processes, on small files each test writes."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(sys.executable).parent / "keras-transformers"
# What must never reach a user's terminal: TensorFlow's C++ log lines, CUDA probing, tracebacks.
LOOKS_LIKE_AN_ERROR = re.compile(r"^[IWEF]\d{4} |cuInit|Traceback|^WARNING: All log messages", re.MULTILINE)
TINY = ["--preset", "tiny", "--set", "num_layers=1", "--no-xla"]


def user_environment():
    """The environment of a user's shell: no TF_CPP_MIN_LOG_LEVEL (conftest sets one)."""
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    return {**env, "PYTHONUNBUFFERED": "1"}


def cli(*args, cwd, timeout=420):
    return subprocess.run([str(SCRIPT), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=user_environment())


def assert_clean(result):
    """Exit 0 and nothing on stdout or stderr that looks like an error."""
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    noise = LOOKS_LIKE_AN_ERROR.findall(result.stdout + result.stderr)
    assert not noise, result.stderr[-3000:]


def metrics_rows(run):
    with open(run / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def backup_epoch(run):
    """The epoch of the last whole backup (``backup/latest`` names its directory)."""
    state = (run / "backup" / "latest").read_text().strip()
    return json.loads((run / "backup" / state / "training_metadata.json").read_text())["epoch"]


def write_text_file(path, lines=400, seed=0):
    rng = np.random.default_rng(seed)
    words = "the cat sat on a mat dog ran to the park big small red blue".split()
    path.write_text("\n".join(" ".join(rng.choice(words, rng.integers(3, 9))) for _ in range(lines)) + "\n")
    return path


# ------------------------------------------------------------------------------ no TensorFlow


def test_help_of_every_command_is_fast_and_needs_no_tensorflow(tmp_path):
    for command in ([], ["quickstart"], ["train"], ["evaluate"], ["generate"], ["export"]):
        times = []
        for _ in range(2):  # the better of two: a shared machine may stall one start
            started = time.perf_counter()
            result = cli(*command, "--help", cwd=tmp_path, timeout=60)
            times.append(time.perf_counter() - started)
        assert result.returncode == 0 and result.stdout.startswith("usage: keras-transformers"), result.stderr
        assert min(times) < 1.0, (command, times)
    assert "--set FIELD=VALUE" in cli("train", "--help", cwd=tmp_path).stdout
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, keras_transformers_cli as c; c.build_parser()\n"
                               "print(sorted(m for m in ('tensorflow', 'keras', 'keras_transformers') if m in sys.modules))"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert imported.stdout.strip() == "[]", imported.stderr


def test_a_bad_set_field_and_a_missing_file_are_one_line_errors(tmp_path):
    write_text_file(tmp_path / "lm.txt", lines=5)
    result = cli("train", "causal-lm", "--data", "lm.txt", "--out", "run", "--set", "num_layer=1", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == ("keras-transformers train: error: --set num_layer=1: TransformerConfig has no field "
                             "'num_layer'. Did you mean 'num_layers'?\n")
    result = cli("train", "classifier", "--data", "missing.tsv", "--out", "run", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (2, "keras-transformers train: error: --data: no such file: "
                                                     "missing.tsv\n")
    result = cli("generate", "nowhere.keras", "hello", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (2, "keras-transformers generate: error: MODEL: no such file: "
                                                     "nowhere.keras\n")
    assert not (tmp_path / "run").exists()


def test_export_onnx_without_tf2onnx_names_the_extra(tmp_path):
    (tmp_path / "m.keras").write_bytes(b"")
    result = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['tf2onnx'] = None\nimport keras_transformers_cli as c\n"
                               "sys.exit(c.main(['export', 'onnx', 'm.keras', 'out']))"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=user_environment())
    assert result.returncode == 2
    assert result.stderr == ('keras-transformers export: error: export onnx needs tf2onnx: '
                             'pip install "keras_transformers[onnx]"\n')


# ------------------------------------------------------------------------------ with TensorFlow


@pytest.mark.slow  # ~20 s for one TensorFlow start; the fast checks above cover the one-line path
def test_a_malformed_file_is_a_one_line_error(tmp_path):
    (tmp_path / "bad.tsv").write_text("a fine film\tpos\nno label on this line\n")
    result = cli("train", "classifier", "--data", "bad.tsv", "--out", "run", *TINY, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("keras-transformers train: error: bad.tsv, line 2: "), result.stderr


def _train_command(epochs):
    return [str(SCRIPT), "train", "causal-lm", "--data", "lm.txt", "--validation", "valid.txt", "--out", "run",
            "--epochs", str(epochs), "--batch-size", "8", "--sequence-length", "32", *TINY]


def _start(command, cwd):
    return subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=user_environment())


def _read_until(process, marker):
    output = ""
    for line in process.stdout:
        output += line
        if marker in line:
            return output
    raise AssertionError(f"no {marker!r} in:\n{output[-3000:]}")


def _interrupt_in_epoch_2(command, run, cwd):
    """Start training, press Ctrl-C in its second epoch; returns the epochs kept."""
    process = _start(command, cwd)
    try:
        output = _read_until(process, "Epoch 2/")
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        output += process.stdout.read()
        assert process.wait(timeout=120) == 130, output[-3000:]
    finally:
        process.kill()
        process.stdout.close()
    finished = backup_epoch(run)
    epochs = command[command.index("--epochs") + 1]
    assert 1 <= finished < int(epochs) and len(metrics_rows(run)) == finished
    assert f"Interrupted: {finished} of {epochs} epochs finished" in output
    assert f"resume from epoch {finished + 1}" in output and (run / "model.keras").exists()
    return finished


def test_train_causal_lm_interrupted_resumes_then_generates_exports_and_serves(tmp_path):
    """Ctrl-C keeps the finished epochs and rerunning the same command resumes after them;
    then generate from the run directory, export its text signature, and run that in a
    TensorFlow-only process: the same text as the command line's."""
    write_text_file(tmp_path / "lm.txt", lines=600)
    write_text_file(tmp_path / "valid.txt", lines=40, seed=1)
    command, run = _train_command(3), tmp_path / "run"
    finished = _interrupt_in_epoch_2(command, run, tmp_path)

    result = cli(*command[1:], cwd=tmp_path)
    assert_clean(result)
    assert f"Epoch {finished + 1}/3" in result.stdout and f"Epoch {finished}/3" not in result.stdout
    rows = metrics_rows(run)
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2]
    for name in ("model.keras", "curves.png", "config.json", "tokenizer/characters.json"):
        assert (run / name).exists(), name
    assert sorted(os.listdir(run / "checkpoints")) == [f"epoch-00{i}.keras" for i in range(1, 4)]
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(run / "logs" / "train"))
    record = json.loads((run / "config.json").read_text())
    assert record["finished_epochs"] == 3 and record["config"]["num_layers"] == 1
    assert record["metrics"]["val_loss"] == pytest.approx(float(rows[-1]["val_loss"]))
    assert float(rows[-1]["val_loss"]) < float(rows[0]["val_loss"])

    result = cli("generate", "run", "the cat", "a dog", "--max-new-tokens", "12", cwd=tmp_path)
    assert_clean(result)
    generated = [line.split("\t", 1) for line in result.stdout.splitlines()]
    assert [prompt for prompt, _ in generated] == ["the cat", "a dog"]
    assert all(0 < len(text) <= 12 for _, text in generated), generated

    result = cli("export", "savedmodel", "run", "serving", "--max-new-tokens", "12", "--no-verify", cwd=tmp_path)
    assert_clean(result)
    assert result.stdout.strip() == f"wrote {tmp_path / 'serving' / '1'}"
    served = subprocess.run(
        [sys.executable, "-c",
         "import sys, tensorflow as tf\n"
         "signature = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
         "out = signature(text=tf.constant(['the cat', 'a dog']))['generated_text'].numpy()\n"
         "assert 'keras_transformers' not in sys.modules\n"
         "print('\\n'.join(t.decode() for t in out))", str(tmp_path / "serving" / "1")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert served.returncode == 0, served.stderr[-3000:]
    assert served.stdout.splitlines() == [text for _, text in generated]  # greedy: the same text


@pytest.mark.slow
def test_train_killed_loses_at_most_the_running_epoch(tmp_path):
    """SIGINT, then SIGKILL in the next run, then the same command: every epoch trained once
    (a killed epoch again), the rerun starting after the last finished one."""
    write_text_file(tmp_path / "lm.txt", lines=1200)
    write_text_file(tmp_path / "valid.txt", lines=40, seed=1)
    command, run = _train_command(5), tmp_path / "run"
    finished = _interrupt_in_epoch_2(command, run, tmp_path)
    process = _start(command, tmp_path)
    try:  # SIGKILL in the epoch after next: nothing can be saved then
        output = _read_until(process, f"Epoch {finished + 1}/5")
        assert "Epoch 1/5" not in output
        if finished + 1 < 5:
            _read_until(process, f"Epoch {finished + 2}/5")
        time.sleep(0.3)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
        process.stdout.close()
    killed_after = backup_epoch(run)
    assert killed_after >= min(finished + 1, 4)
    result = cli(*command[1:], cwd=tmp_path)
    assert_clean(result)
    assert f"Epoch {killed_after + 1}/5" in result.stdout and f"Epoch {killed_after}/5" not in result.stdout
    assert [int(row["epoch"]) for row in metrics_rows(run)] == [0, 1, 2, 3, 4]  # each epoch once
    assert sorted(os.listdir(run / "checkpoints")) == [f"epoch-00{i}.keras" for i in range(1, 6)]


def test_train_classifier_evaluates_and_tracks_in_mlflow(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    rng = np.random.default_rng(0)
    good, bad, filler = "good great fine nice love".split(), "bad awful poor hate sad".split(), "the film was a plot".split()
    rows = ["text\tlabel"]
    for _ in range(96):
        label = rng.choice(["pos", "neg"])
        cue = rng.choice(good if label == "pos" else bad)
        rows.append(" ".join([*rng.choice(filler, 3), cue, cue]) + f"\t{label}")
    (tmp_path / "reviews.tsv").write_text("\n".join(rows) + "\n")
    result = cli("train", "classifier", "--data", "reviews.tsv", "--validation", "reviews.tsv", "--out", "run",
                 "--epochs", "10", "--batch-size", "16", "--sequence-length", "16", "--vocabulary-size", "60",
                 "--learning-rate", "5e-3", "--mlflow", *TINY, cwd=tmp_path)
    assert_clean(result)
    csv_rows = metrics_rows(tmp_path / "run")
    assert len(csv_rows) == 10

    result = cli("evaluate", "run", "--data", "reviews.tsv", "--batch-size", "16", cwd=tmp_path)
    assert_clean(result)
    scores = json.loads(result.stdout)
    assert scores["task"] == "classifier" and scores["examples"] == 96
    # The validation file is the evaluated file: the last epoch's validation numbers, again.
    assert scores["accuracy"] == pytest.approx(float(csv_rows[-1]["val_accuracy"]), abs=1e-6)
    assert scores["loss"] == pytest.approx(float(csv_rows[-1]["val_loss"]), rel=1e-4)
    assert scores["accuracy"] > 0.9, (scores, csv_rows)  # the cue words decide the label

    run_id = json.loads((tmp_path / "run" / "mlflow_run.json").read_text())["run_id"]
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["config.num_layers"] == "1" and run.data.params["run.task"] == "classifier"
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        history = sorted(client.get_metric_history(run_id, name), key=lambda metric: metric.step)
        assert [metric.step for metric in history] == list(range(10)), name
        np.testing.assert_allclose([metric.value for metric in history],
                                   [float(row[name]) for row in csv_rows], rtol=1e-6, err_msg=name)
    logged = [model.name for model in client.search_logged_models([run.info.experiment_id])]
    assert "model" in logged


# ------------------------------------------------------------------------------ the other tasks


@pytest.mark.slow
def test_train_tagger_and_seq2seq_then_evaluate_and_translate(tmp_path):
    rng = np.random.default_rng(0)
    kinds = {"John": "PER", "Mary": "PER", "Paris": "LOC", "London": "LOC", "Acme": "ORG", "Globex": "ORG"}
    sentences = []
    for _ in range(80):
        words = ["Yesterday", rng.choice(list(kinds)), "went", "to", rng.choice(list(kinds)), "."]
        sentences.append("\n".join(f"{w} {'B-' + kinds[w] if w in kinds else 'O'}" for w in words))
    (tmp_path / "ner.conll").write_text("\n\n".join(sentences) + "\n")
    result = cli("train", "tagger", "--data", "ner.conll", "--out", "tagger", "--epochs", "4", "--batch-size", "8",
                 "--sequence-length", "16", "--vocabulary-size", "60", "--learning-rate", "5e-3", *TINY, cwd=tmp_path)
    assert_clean(result)
    result = cli("evaluate", "tagger", "--data", "ner.conll", cwd=tmp_path)
    assert_clean(result)
    scores = json.loads(result.stdout)
    assert scores["task"] == "tagger" and sorted(scores["per_type"]) == ["LOC", "ORG", "PER"]
    assert scores["f1"] > 0.9, scores  # each name always has one type

    words = {"cat": "chat", "dog": "chien", "red": "rouge", "big": "grand", "the": "le"}
    pairs = []
    for _ in range(120):
        source = list(rng.choice(list(words), rng.integers(2, 5)))
        pairs.append(" ".join(source) + "\t" + " ".join(words[w] for w in source))
    (tmp_path / "pairs.tsv").write_text("\n".join(pairs) + "\n")
    result = cli("train", "seq2seq", "--data", "pairs.tsv", "--out", "translator", "--epochs", "2", "--batch-size",
                 "8", "--sequence-length", "12", "--vocabulary-size", "40", *TINY, cwd=tmp_path)
    assert_clean(result)
    result = cli("evaluate", "translator", "--data", "pairs.tsv", cwd=tmp_path)
    assert_clean(result)
    scores = json.loads(result.stdout)
    assert scores["task"] == "seq2seq" and scores["examples"] == 120
    assert scores["perplexity"] == pytest.approx(np.exp(scores["loss"])) and 0 <= scores["bleu"] <= 100
    assert "tok:13a" in scores["bleu_signature"]
    result = cli("generate", "translator", "the cat", "red dog", cwd=tmp_path)
    assert_clean(result)
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["the cat", "red dog"]


@pytest.mark.slow
def test_fine_tune_an_imported_checkpoint(tmp_path):
    import shutil

    checkpoint = tmp_path / "tiny_bert"
    shutil.copytree(Path(__file__).parent / "convert" / "tiny_bert", checkpoint)
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"good bad the film was a".split()]
    vocabulary += [chr(c) for c in range(ord("a"), ord("z") + 1) if chr(c) not in vocabulary]
    vocabulary += ["##" + chr(c) for c in range(ord("a"), ord("z") + 1)][:64 - len(vocabulary)]
    (checkpoint / "vocab.txt").write_text("\n".join(vocabulary) + "\n")
    rows = ["text\tlabel"] + [f"the film was {word}\t{word}" for word in ("good", "bad") * 16]
    (tmp_path / "reviews.tsv").write_text("\n".join(rows) + "\n")
    result = cli("train", "classifier", "--data", "reviews.tsv", "--out", "run", "--from-pretrained", checkpoint,
                 "--epochs", "1", "--batch-size", "8", "--sequence-length", "16", "--no-xla", cwd=tmp_path)
    assert_clean(result)
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["config"]["hidden_size"] == 32 and record["config"]["type_vocab_size"] == 2
    assert record["label_names"] == ["bad", "good"] and record["tokenizer"] == "pretrained"
    assert (tmp_path / "run" / "tokenizer" / "vocab.txt").read_text() == (checkpoint / "vocab.txt").read_text()
    result = cli("train", "classifier", "--data", "reviews.tsv", "--out", "other", "--from-pretrained", checkpoint,
                 "--set", "num_layers=1", cwd=tmp_path)
    assert result.returncode == 2 and "--from-pretrained takes the checkpoint's" in result.stderr


def test_a_truncated_keras_file_is_named_as_such(tmp_path):
    """Keras itself reports a truncated .keras as "File not found"."""
    from keras_transformers import jobs
    from keras_transformers.models import CausalLM, TransformerConfig

    whole = tmp_path / "whole.keras"
    CausalLM(TransformerConfig.from_preset("tiny", num_layers=1)).save(whole)
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    with pytest.raises(jobs.JobError, match=r"truncated.keras is not a .keras file: not a whole zip archive"):
        jobs.load_model(truncated)
    assert jobs.load_model(whole).config.num_layers == 1
