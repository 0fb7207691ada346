"""How close each exported encoder in ``serving_latency.json`` runs to this machine's fp32
matmul rate: why ONNX Runtime at <= 0.6x TensorFlow's latency (issue 20) is out of reach at
batch 8 and 32.

Two measurements, one JSON object on stdout (and ``--output``); progress on stderr.

* ``peak_gflops``: a ``2048 x 2048 x 2048`` float32 matmul, medians of ``--repeats`` calls,
  in TensorFlow (``tf.matmul`` in a ``tf.function``, no XLA: the path a SavedModel is served
  on) and in ONNX Runtime (one ``MatMul`` node, default session options), alternating.
* ``cells``: for every ``encoder_ids_L<length>_B<batch>`` cell of the serving JSON, the
  forward pass's floating-point operations (``2 x`` multiply-adds: per token and block,
  ``4 h^2`` for the attention projections, ``2 h f`` for the feed-forward and ``2 L h`` for
  the scores and the weighted values; the embedding lookups and the tiny head left out) over
  each side's p50 latency, as GFLOP/s and as a share of the faster peak; and
  ``onnx_rate_for_goal``: the rate ONNX Runtime would need to serve the cell in 0.6x our
  SavedModel's p50, as a share of the peak (above 1: no fp32 implementation here can).

    python benchmarks/encoder_flops.py --output benchmarks/results/encoder_flops.json
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
import onnxruntime  # noqa: E402
import tensorflow as tf  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from keras_transformers import TransformerConfig  # noqa: E402

GOAL = 0.6  # issue 20: ONNX Runtime <= 0.6x the TF latency for the encoder


def log(message):
    print(f"[encoder_flops] {message}", file=sys.stderr, flush=True)


def peak_gflops(size, repeats):
    """GFLOP/s of one ``size``-cubed float32 matmul in TensorFlow and in ONNX Runtime."""
    rng = np.random.default_rng(0)
    a, b = (rng.random((size, size), dtype=np.float32) for _ in range(2))
    tf_a, tf_b = tf.constant(a), tf.constant(b)
    product = tf.function(lambda x, y: tf.matmul(x, y))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "B"], ["C"])], "matmul",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [size, size]) for name in "AB"],
        [helper.make_tensor_value_info("C", TensorProto.FLOAT, [size, size])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    sides = {"tensorflow": lambda: product(tf_a, tf_b).numpy(),
             "onnxruntime": lambda: session.run(None, {"A": a, "B": b})}
    times = {name: [] for name in sides}
    for call in sides.values():
        call()  # trace / initialize
    for _ in range(repeats):
        for name, call in sides.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: 2 * size ** 3 / statistics.median(samples) / 1e9 for name, samples in times.items()}


def forward_flops(config, batch, length):
    h, f = config.hidden_size, config.intermediate_size
    per_token = config.num_layers * (4 * h * h + 2 * h * f + 2 * length * h)
    return 2 * per_token * batch * length


def cells(serving, config, peak):
    result = {}
    for name, cell in serving["groups"]["encoder"]["cells"].items():
        if not name.startswith("encoder_ids"):
            continue
        length, batch = int(name.split("_L")[1].split("_")[0]), int(name.split("_B")[1])
        flops = forward_flops(config, batch, length)
        gflops = {side: flops / (stats["p50_ms"] / 1e3) / 1e9 for side, stats in cell["sides"].items()}
        result[name] = {"gflop": flops / 1e9, "gflops_p50": {s: round(v, 1) for s, v in gflops.items()},
                        "share_of_peak": {s: round(v / peak, 3) for s, v in gflops.items()},
                        "onnx_rate_for_goal": round(gflops["ours_tf"] / GOAL / peak, 3)}
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serving", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                         "results", "serving_latency.json"))
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--output")
    args = parser.parse_args(argv)
    with open(args.serving) as file:
        serving = json.load(file)
    config = TransformerConfig.from_preset("minilm_l6")  # the serving benchmark's encoder shape
    log(f"{args.size}^3 float32 matmul, {args.repeats} calls per library")
    peak = peak_gflops(args.size, args.repeats)
    log(", ".join(f"{name} {value:.0f} GFLOP/s" for name, value in peak.items()))
    result = {"benchmark": "encoder_flops", "command": "python benchmarks/encoder_flops.py " + " ".join(
                  sys.argv[1:] if argv is None else argv),
              "serving_json": os.path.relpath(args.serving), "serving_machine": serving.get("machine"),
              "matmul_size": args.size, "repeats": args.repeats,
              "peak_gflops": {name: round(value, 1) for name, value in peak.items()},
              "model": {"preset": "minilm_l6", "hidden_size": config.hidden_size,
                        "intermediate_size": config.intermediate_size, "num_layers": config.num_layers},
              "goal_onnx_over_tf": GOAL,
              "cells": cells(serving, config, max(peak.values())),
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "tensorflow": tf.__version__, "onnxruntime": onnxruntime.__version__}}
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as file:
            file.write(text + "\n")
    return result


if __name__ == "__main__":
    main()
