"""Training throughput of CausalLM under MirroredStrategy on 1 and 2 replicas, and the
per-step cost of synchronising the replicas.

Each measurement is a fresh Python process that splits the host CPU into 2 logical devices
(before TensorFlow starts) and trains with ``fit`` on a fixed global batch:

* ``1 device, XLA``: no strategy, ``compile()`` defaults (XLA on): what one device runs;
* ``1 replica, graph``: ``MirroredStrategy(["CPU:0"])`` with ``jit_compile=False`` (with XLA
  and AdamW, a 1-replica MirroredStrategy fails in TF 2.21: ``merge_call`` inside the nested
  XLA function; see docs/distributed.md);
* ``2 replicas``: ``MirroredStrategy(["CPU:0", "CPU:1"])``; each replica gets half the global
  batch; XLA falls back to a graph under 2 replicas (see ``TaskModel``), so the like-for-like
  comparison is with ``1 replica, graph``.

tokens/s = global batch * context / median step time (a callback times every step after the
warm-up steps). Runs alternate between the settings (A, B, C, C, B, A, ...) so load from other
processes falls on all alike. The 2-replica process also times the synchronisation alone: an
all-reduce (SUM across the replicas, the same collective that ``fit`` uses for the gradients)
of tensors shaped like the model's trainable variables, in a ``tf.function``, median of many
calls.

On a host whose replicas share the same CPU cores (2 logical devices over 2 cores here) two
replicas cannot be faster than one: they split the same cores. Read the figures as the cost
of the strategy (``overhead``), not as a speed-up; on separate GPUs the compute splits and the
all-reduce is what remains. One JSON object goes to stdout (and ``--output``).

    python benchmarks/distributed.py --shapes small --steps 20 --warmup 5 --repeats 2
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

SHAPES = {  # as benchmarks/train_throughput.py
    "small": dict(batch=12, context=64, config=dict(
        vocab_size=65, hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512, max_length=64)),
    "gpt2_small": dict(batch=2, context=256, config={}),
}
SETTINGS = {  # name -> (MirroredStrategy's devices, or None for no strategy; jit_compile)
    "1 device, XLA": (None, "auto"),
    "1 replica, graph": (["CPU:0"], False),
    "2 replicas": (["CPU:0", "CPU:1"], "auto"),
}


def log(message):
    print(f"[distributed] {message}", file=sys.stderr, flush=True)


def child(args):
    """One measurement in this (fresh) process; prints one JSON line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from keras_transformers import CausalLM, TransformerConfig

    shape = SHAPES[args.shape]
    devices, jit_compile = SETTINGS[args.setting]
    strategy = tf.distribute.MirroredStrategy(devices) if devices else tf.distribute.get_strategy()
    # The GPT-2 architecture at the shape's size, as benchmarks/train_throughput.py builds it.
    config = TransformerConfig.from_preset("gpt2_small", dropout=0.0, attention_dropout=0.0, **shape["config"])
    batch, context = shape["batch"], shape["context"]
    rng = np.random.default_rng(0)
    windows = rng.integers(1, config.vocab_size, (batch * 8, context + 1), dtype=np.int32)
    x = {"token_ids": windows[:, :-1], "padding_mask": np.ones_like(windows[:, :-1])}
    dataset = tf.data.Dataset.from_tensor_slices((x, windows[:, 1:])).batch(batch, drop_remainder=True)
    dataset = dataset.repeat().prefetch(2)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = CausalLM(config)
        model.compile(optimizer=keras.optimizers.AdamW(1e-3), jit_compile=jit_compile)

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    timer = StepTimer()
    model.fit(dataset, steps_per_epoch=args.warmup + args.steps, epochs=1, verbose=0, callbacks=[timer])
    times = timer.times[args.warmup:]
    result = {"setting": args.setting, "replicas": strategy.num_replicas_in_sync,
              "xla": bool(model._xla_steps is not None), "median_step_s": statistics.median(times),
              "step_s": times, "tokens_per_s": batch * context / statistics.median(times)}
    if strategy.num_replicas_in_sync > 1:
        shapes = [v.shape for v in model.trainable_variables]

        @tf.function
        def all_reduce():
            def replica_fn():
                context_ = tf.distribute.get_replica_context()
                return context_.all_reduce(tf.distribute.ReduceOp.SUM, [tf.ones(s) for s in shapes])
            return strategy.run(replica_fn)

        for _ in range(3):
            tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t,
                                  strategy.experimental_local_results(all_reduce()[0]))
        calls = []
        for _ in range(args.allreduce_calls):
            start = time.perf_counter()
            out = all_reduce()
            strategy.experimental_local_results(out[-1])[0].numpy()
            calls.append(time.perf_counter() - start)
        result["all_reduce"] = {"parameters": int(sum(np.prod(s) for s in shapes)), "tensors": len(shapes),
                                "median_s": statistics.median(calls), "calls": len(calls)}
    print(json.dumps(result), flush=True)


def run_child(shape, setting, args):
    command = [sys.executable, os.path.abspath(__file__), "--child", "--shape", shape, "--setting", setting,
               "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--allreduce-calls", str(args.allreduce_calls)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if completed.returncode != 0:
        raise RuntimeError(f"{shape}/{setting} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="small", help="comma-separated: small, gpt2_small")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (tracing, compiling)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each setting (fresh processes)")
    parser.add_argument("--allreduce-calls", type=int, default=50)
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per run")
    parser.add_argument("--output")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    started = time.time()
    report = {"benchmark": "distributed", "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "load_average_at_start": os.getloadavg()},
              "note": ("2 logical CPU devices share this host's cores: 2 replicas split the same cores, so "
                       "this measures the strategy's overhead, not a speed-up."),
              "shapes": {}}
    for shape in args.shapes.split(","):
        order = list(SETTINGS)
        runs = {name: [] for name in order}
        for repeat in range(args.repeats):
            for name in (order if repeat % 2 == 0 else order[::-1]):
                log(f"{shape}: {name} (run {repeat + 1}/{args.repeats})")
                runs[name].append(run_child(shape, name, args))
        summary = {}
        for name, results in runs.items():
            steps = [t for result in results for t in result["step_s"]]
            median = statistics.median(steps)
            summary[name] = {"median_step_ms": 1000 * median,
                             "tokens_per_s": SHAPES[shape]["batch"] * SHAPES[shape]["context"] / median,
                             "xla": results[0]["xla"], "runs": len(results), "timed_steps": len(steps)}
        two, graph = summary["2 replicas"], summary["1 replica, graph"]
        reduces = [r["all_reduce"] for r in runs["2 replicas"]]
        report["shapes"][shape] = {
            **SHAPES[shape], "global_batch": SHAPES[shape]["batch"],
            "per_replica_batch_at_2": SHAPES[shape]["batch"] // 2, "settings": summary,
            "overhead_2_vs_1_graph_ms_per_step": two["median_step_ms"] - graph["median_step_ms"],
            "overhead_2_vs_1_graph_ratio": two["median_step_ms"] / graph["median_step_ms"],
            "all_reduce_of_the_gradients": {
                "parameters": reduces[0]["parameters"], "tensors": reduces[0]["tensors"],
                "median_ms": 1000 * statistics.median(r["median_s"] for r in reduces)},
        }
    report["wall_s"] = time.time() - started
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
