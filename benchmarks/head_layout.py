"""Which form of ``x·Wᵀ`` XLA on CPU runs fastest, by rows and weight shape (the tied head).

An output-major weight ``W`` ``(out, in)`` (an embedding table used as the tied output layer,
an int8 kernel) times ``rows`` hidden states can be written two ways:

* ``transposed_dot``: ``tf.matmul(x, W, transpose_b=True)``;
* ``single_row``: ``tf.matmul(x, tf.transpose(W))`` (KerasHub's tied head is written so).

Each is timed as a decoding step runs it: ``--steps`` steps of ``logits = x·Wᵀ`` and the argmax
(the next state depends on the token, so nothing is hoisted out of the loop), in one XLA while
loop whose rows are unknown while tracing, as in ``generate``. ``chosen`` is
:func:`keras_transformers.ops.matmul_transposed`, which takes ``single_row`` for one row of a
weight ``>= 128`` wide (``in``) and ``transposed_dot`` otherwise; ``chosen_over_best`` says how
close its choice comes to the faster form (1.0 = it picked the faster one). Steps/s, medians of
``--repeats`` calls, forms alternating.

    python benchmarks/head_layout.py --output benchmarks/results/head_layout.json
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from keras_transformers.ops import matmul_transposed  # noqa: E402

FORMS = {
    "transposed_dot": lambda x, w: tf.matmul(x, w, transpose_b=True),
    "single_row": lambda x, w: tf.matmul(x, tf.transpose(w)),
    "chosen": matmul_transposed,
}
# (out, in): the generation benchmark's tied heads (64 x 32, 50,257 x 128, 50,257 x 768), a
# gpt2_small kernel (3,072 x 768), and tables either side of the 128-wide threshold.
WEIGHTS = [(64, 32), (8192, 64), (50257, 64), (512, 128), (8192, 128), (50257, 128), (50257, 768),
           (3072, 768)]


def head_loop(weights, form, steps):
    """A ``tf.function(jit_compile=True)`` running ``steps`` steps of ``argmax(form(x, W))``."""

    @tf.function(jit_compile=True, input_signature=[tf.TensorSpec([None, weights.shape[1]])])
    def loop(hidden):
        def body(i, hidden, token):
            token = tf.argmax(form(hidden, weights), axis=-1, output_type=tf.int32)
            return i + 1, hidden + tf.cast(token[:, None], hidden.dtype) * 1e-9, token

        return tf.while_loop(lambda i, hidden, token: i < steps, body,
                             (0, hidden, tf.zeros([tf.shape(hidden)[0]], tf.int32)))[2]

    return loop


def steps_per_s(weights, rows, steps, repeats, forms=FORMS):
    """``{form: steps/s}`` for ``rows`` hidden states, the forms' calls alternating."""
    hidden = tf.random.normal([rows, weights.shape[1]])
    loops = {name: head_loop(weights, form, steps) for name, form in forms.items()}
    for loop in loops.values():
        loop(hidden).numpy()
    times = {name: [] for name in loops}
    for _ in range(repeats):
        for name, loop in loops.items():
            start = time.perf_counter()
            loop(hidden).numpy()
            times[name].append(time.perf_counter() - start)
    return {name: steps / statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, action="append", help="rows (default 1, 2 and 8)")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--output")
    args = parser.parse_args()
    rows_list = args.rows or [1, 2, 8]
    result = {"benchmark": "head_layout", "steps": args.steps, "repeats": args.repeats,
              "unit": "steps/s", "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                                             "tensorflow": tf.__version__},
              "command": " ".join(["python", *sys.argv]), "cells": []}
    rng = np.random.default_rng(0)
    for shape in WEIGHTS:
        weights = tf.Variable(rng.normal(size=shape).astype("float32"))  # read each step, as weights are
        for rows in rows_list:
            measured = steps_per_s(weights, rows, args.steps, args.repeats)
            best = max(measured["transposed_dot"], measured["single_row"])
            cell = {"weights": list(shape), "rows": rows, **{k: round(v, 1) for k, v in measured.items()},
                    "single_row_over_transposed_dot": round(measured["single_row"] / measured["transposed_dot"], 3),
                    "chosen_over_best": round(measured["chosen"] / best, 3)}
            result["cells"].append(cell)
            print(json.dumps(cell), file=sys.stderr)
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
