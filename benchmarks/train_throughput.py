"""Training throughput of our CausalLM against a KerasHub decoder stack of the same shape.

Both sides are trained the plain Keras way: ``compile(optimizer=AdamW, ...)`` then
``fit(dataset.repeat(), steps_per_epoch=...)``, warm-up steps first, then the timed steps. Each
run of a side is a fresh Python process (so the two never share caches, memory or compiled
state), and the runs alternate (ours, KerasHub, KerasHub, ours, ...) so that load from other
processes falls on both alike. A callback times every step; tokens/s = batch·context / median
step time over all timed steps of a side. ``jit_compile`` is compared two ways: the same for
both (``--jit true``), and each library's default (``--jit default``).
The same run measures the machine's fp32 matmul rate, to express each model's FLOP/s as a
share of it. One JSON object goes to stdout (and to ``--output``); progress goes to stderr.

    python benchmarks/train_throughput.py --shape small --steps 30 --warmup 10
"""

import argparse
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from keras_transformers import CausalLM, TransformerConfig  # noqa: E402
from keras_transformers.ops.attention import get_jit_compile  # noqa: E402

SHAKESPEARE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                           "tinyshakespeare", "input.txt")
FLOPS_FORMULA = ("train FLOP per step = 6 * N_non_embedding * tokens + 12 * layers * hidden * context * tokens, "
                 "tokens = batch * context (Kaplan et al. 2020 / nanoGPT); the tied LM-head matmul "
                 "(6 * vocab * hidden * tokens) is not in it and is reported separately")
SHAPES = {
    # nanoGPT's CPU shape (shakespeare_char): 4 layers, 4 heads, width 128, context 64, batch 12.
    "small": dict(batch=12, context=64, config=dict(
        vocab_size=65, hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512, max_length=64)),
    # GPT-2 124M at context 256; batch 2 so a step takes seconds, not minutes, on 2 cores.
    "gpt2_small": dict(batch=2, context=256, config={}),
}


def log(message):
    print(f"[train_throughput] {message}", file=sys.stderr, flush=True)


def matmul_gflops(m, k, n, repeats):
    """Median GFLOP/s of an fp32 ``(m, k) @ (k, n)`` in a tf.function (2·m·k·n FLOP per call)."""
    a, b = tf.random.normal([m, k]), tf.random.normal([k, n])
    matmul = tf.function(tf.matmul)
    for _ in range(5):
        matmul(a, b).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()
        times.append(time.perf_counter() - start)
    return 2 * m * k * n / statistics.median(times) / 1e9


def token_windows(vocab_size, count, context, data, rng):
    """``count`` windows of ``context + 1`` token ids, and the name of their source."""
    if data != "random" and os.path.exists(SHAKESPEARE):
        text = open(SHAKESPEARE, encoding="utf-8").read()
        chars = sorted(set(text))
        if len(chars) == vocab_size:  # the character vocabulary of nanoGPT's shakespeare_char
            lookup = {c: i for i, c in enumerate(chars)}
            ids = np.array([lookup[c] for c in text], dtype=np.int32)
            starts = rng.integers(0, len(ids) - context - 1, size=count)
            return np.stack([ids[s:s + context + 1] for s in starts]), "tinyshakespeare characters"
    return rng.integers(1, vocab_size, size=(count, context + 1), dtype=np.int32), "uniform random ids"


def make_dataset(windows, batch, with_sample_weight):
    x = {"token_ids": windows[:, :-1], "padding_mask": np.ones_like(windows[:, :-1])}
    parts = (x, windows[:, 1:])
    if with_sample_weight:  # our CausalLM weighs the loss by padding_mask itself; give KerasHub the same
        parts += (np.ones(windows[:, 1:].shape, np.float32),)
    return tf.data.Dataset.from_tensor_slices(parts).batch(batch, drop_remainder=True).repeat().prefetch(2)


def keras_hub_decoder(config, context):
    """TokenAndPositionEmbedding, N pre-norm TransformerDecoders (causal), LayerNorm, tied head."""
    token_ids = keras.Input((context,), dtype="int32", name="token_ids")
    padding_mask = keras.Input((context,), dtype="int32", name="padding_mask")
    embedding = keras_hub.layers.TokenAndPositionEmbedding(
        config.vocab_size, config.max_length, config.hidden_size, tie_weights=True)
    # Same GELU as ours: the tanh form for GPT-2 ("gelu_approximate"), the erf form otherwise.
    activation = "gelu" if config.activation == "gelu" else (
        lambda x: keras.activations.gelu(x, approximate=True))
    x = embedding(token_ids)
    for _ in range(config.num_layers):
        x = keras_hub.layers.TransformerDecoder(
            config.intermediate_size, config.num_heads, dropout=0, activation=activation,
            normalize_first=True, layer_norm_epsilon=config.norm_epsilon)(x, decoder_padding_mask=padding_mask)
    x = keras.layers.LayerNormalization(epsilon=config.norm_epsilon)(x)
    logits = embedding.token_embedding(x, reverse=True)
    return keras.Model({"token_ids": token_ids, "padding_mask": padding_mask}, logits, name="keras_hub_decoder")


class StepTimer(keras.callbacks.Callback):
    """Wall time of every train step, across any number of ``fit`` calls."""

    def __init__(self):
        super().__init__()
        self.times, self.losses = [], []

    def on_train_batch_begin(self, batch, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        loss = float(logs["loss"])  # a host value: the step has finished
        self.times.append(time.perf_counter() - self.start)
        self.losses.append(loss)


def xla_compiled_step(model):
    """True when the traced train step is a call op marked ``_XlaMustCompile`` (XLA really ran it)."""
    try:
        step = inspect.getclosurevars(model.train_function).nonlocals["multi_step_on_iterator"]
        for concrete in step._list_all_concrete_functions():
            for op in concrete.graph.get_operations():
                if op.type in ("StatefulPartitionedCall", "PartitionedCall"):
                    try:
                        if op.get_attr("_XlaMustCompile"):
                            return True
                    except ValueError:
                        pass
        return False
    except Exception as error:  # a Keras internals change must not sink the benchmark
        log(f"could not inspect the train step for XLA: {error!r}")
        return None


def compile_arguments(jit_mode):
    """``true``/``false``: the same ``jit_compile`` for both sides; ``default``: each library's own
    default (ours compiles with XLA; Keras' "auto", which KerasHub models get, turns XLA off on CPU)."""
    return {} if jit_mode == "default" else {"jit_compile": jit_mode == "true"}


def shape_setup(name, args):
    spec = SHAPES[name]
    batch, context = args.batch or spec["batch"], spec["context"]
    config = TransformerConfig.from_preset("gpt2_small", dropout=0.0, attention_dropout=0.0, **spec["config"])
    return config, batch, context


def measure_side(name, side, jit_mode, args):
    """In this (fresh) process: build one side, warm it up, time ``args.steps`` train steps."""
    config, batch, context = shape_setup(name, args)
    rng = np.random.default_rng(args.seed)
    windows, source = token_windows(config.vocab_size, 8 * batch, context, args.data, rng)
    keras.utils.set_random_seed(args.seed)
    if side == "ours":  # default loss: CE weighted by padding_mask
        model, compile_args, with_weight = CausalLM(config), {}, False
    else:  # give KerasHub the same per-token weights and weighted accuracy
        model, with_weight = keras_hub_decoder(config, context), True
        compile_args = dict(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                            weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    dataset, timer = make_dataset(windows, batch, with_weight), StepTimer()
    model(next(iter(dataset))[0])  # create the weights
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-4), **compile_arguments(jit_mode),
                  **compile_args)
    # One fit call: warm-up steps (tracing, XLA compilation) first, then the timed ones.
    model.fit(dataset, steps_per_epoch=args.warmup + args.steps, epochs=1, verbose=0, callbacks=[timer])
    return {"data": source, "params": model.count_params(), "jit_compile_effective": bool(model.jit_compile),
            "xla_compiled_train_step": xla_compiled_step(model), "first_step_s": timer.times[0],
            "timed_step_s": timer.times[args.warmup:], "loss_first_last": [timer.losses[0], timer.losses[-1]]}


def run_worker(name, side, jit_mode, args):
    """Run :func:`measure_side` in a fresh Python process, so the two sides never share caches,
    memory or compiled state, and return its result."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", side, "--shape", name, "--jit", jit_mode,
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--data", args.data,
               "--seed", str(args.seed)] + (["--batch", str(args.batch)] if args.batch else [])
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode:
        raise RuntimeError(f"worker {side} {name} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout)


def run_shape(name, args, peak_gflops, jit_mode):
    config, batch, context = shape_setup(name, args)
    tokens = batch * context
    result = {"jit_mode": jit_mode, "batch": batch, "context": context, "tokens_per_step": tokens,
              "steps_per_run": args.steps, "warmup": args.warmup, "runs_per_side": args.rounds,
              "config": config.to_dict()}
    # Runs alternate A B, B A, ... so that load drift on a shared machine falls on both sides.
    runs = {"ours": [], "keras_hub": []}
    for r in range(args.rounds):
        for side in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            log(f"{name}/{jit_mode}/{side}: run {r + 1}/{args.rounds} ({args.warmup} warm-up + {args.steps} timed steps)")
            runs[side].append(run_worker(name, side, jit_mode, args))

    for side, side_runs in runs.items():
        timed = [t for run in side_runs for t in run["timed_step_s"]]
        median = statistics.median(timed)
        params = side_runs[0]["params"]
        non_embedding = params - (config.vocab_size + config.max_length) * config.hidden_size
        flop = 6 * non_embedding * tokens + 12 * config.num_layers * config.hidden_size * context * tokens
        gflops = flop / median / 1e9
        result["data"] = side_runs[0]["data"]
        result[side] = {
            "params": params, "non_embedding_params": non_embedding,
            "jit_compile_effective": side_runs[0]["jit_compile_effective"],
            "xla_compiled_train_step": side_runs[0]["xla_compiled_train_step"],
            "first_step_s": round(statistics.median(run["first_step_s"] for run in side_runs), 3),
            "median_step_s": round(median, 5), "step_s_min_max": [round(min(timed), 5), round(max(timed), 5)],
            "run_medians_s": [round(statistics.median(run["timed_step_s"]), 5) for run in side_runs],
            "loss_first_last": [round(v, 4) for v in side_runs[0]["loss_first_last"]],
            "tokens_per_s": round(tokens / median, 1),
            "train_gflop_per_step": round(flop / 1e9, 3),
            "lm_head_gflop_per_step": round(6 * config.vocab_size * config.hidden_size * tokens / 1e9, 3),
            "train_gflops": round(gflops, 2), "share_of_matmul_peak": round(gflops / peak_gflops, 3)}
        log(f"{name}/{jit_mode}/{side}: {result[side]['tokens_per_s']:.0f} tokens/s, median step "
            f"{median * 1e3:.1f} ms")
    ours, peer = result["ours"], result["keras_hub"]
    result["params_ratio_ours_over_keras_hub"] = round(ours["params"] / peer["params"], 4)
    result["speedup_ours_over_keras_hub"] = round(ours["tokens_per_s"] / peer["tokens_per_s"], 3)
    if name == "small" and jit_mode != "false":
        result["target_speedup"] = 1.3
        result["meets_target"] = result["speedup_ours_over_keras_hub"] >= 1.3
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=[*SHAPES, "all"], default="all")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 50 small, 5 gpt2_small)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed steps first (default: 10 small, 2 gpt2_small)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs per side, each in a fresh process, alternating ours/KerasHub")
    parser.add_argument("--worker", choices=["ours", "keras_hub"], help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=None, help="override the shape's batch size")
    parser.add_argument("--data", choices=["auto", "random"], default="auto",
                        help="auto: tiny Shakespeare characters where the vocabulary is 65 and the file exists")
    parser.add_argument("--jit", choices=["true", "false", "default"], action="append",
                        help="jit_compile for both sides, or each library's default; repeatable "
                             "(default: true and default for small, true for gpt2_small)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.worker:  # one side, one shape, one jit mode; JSON of raw step times to stdout
        print(json.dumps(measure_side(args.shape, args.worker, args.jit[0], args)))
        return

    log("measuring the fp32 matmul rate")
    matmul = {"1024x1024@1024x1024": round(matmul_gflops(1024, 1024, 1024, 30), 1),
              "768x128@128x512": round(matmul_gflops(768, 128, 512, 200), 1)}
    peak = max(matmul.values())
    report = {
        "benchmark": "train_throughput",
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "keras_hub": keras_hub.__version__,
                     "python": platform.python_version()},
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "usable_cpus": len(os.sched_getaffinity(0)),
                    "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "default (all)",
                    "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or "default (all)",
                    "gpus": len(tf.config.list_physical_devices("GPU"))},
        "our_attention_core_jit_compile": get_jit_compile(),
        "matmul_fp32_gflops": matmul, "matmul_peak_gflops": peak,
        "flops_formula": FLOPS_FORMULA,
        "tokens_per_s": "batch * context / median step time over the timed steps (warm-up excluded)",
        "shapes": {},
    }
    for name in (SHAPES if args.shape == "all" else [args.shape]):
        defaults = (50, 10) if name == "small" else (5, 2)
        warmup = defaults[1] if args.warmup is None else args.warmup
        shape_args = argparse.Namespace(**{**vars(args), "steps": args.steps or defaults[0],
                                           "warmup": max(1, warmup), "rounds": max(1, args.rounds)})
        modes = args.jit or (["true", "default"] if name == "small" else ["true"])
        report["shapes"][name] = {mode: run_shape(name, shape_args, peak, mode) for mode in modes}

    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
