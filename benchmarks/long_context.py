"""Long context: peak memory and time of exact vs chunked attention, forward + backward.

One :class:`MultiHeadAttention` layer (hidden 768, 12 heads of 64, causal, batch 1), the loss
``sum(outputs · g)`` and its gradient with respect to the input and every weight, in one
``tf.function(jit_compile=True)`` step. Every configuration runs in a fresh Python process;
its peak memory is that child's peak resident set (``VmHWM`` of ``/proc/self/status``:
TensorFlow's own ~0.5 GB, XLA compilation and the step). Time is the median of ``--steps``
steps after one warm-up (compiling) step. One JSON object goes to stdout and ``--output``.

    python benchmarks/long_context.py --output benchmarks/results/long_context.json
    python benchmarks/long_context.py --runs exact:1024 chunked:1024 --steps 2   # quick check
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
# exact at 16k would need ~45 GB (scores 12 × 16k² float32, twice): not run on a 24 GB machine.
DEFAULT_RUNS = ["exact:1024", "chunked:1024", "exact:2048", "chunked:2048", "exact:4096",
                "chunked:4096", "exact:8192", "chunked:8192", "chunked:16384", "chunked:32768"]
TARGETS = {"chunked_16384_peak_gb_below": 2.0, "chunked_32768_peak_gb_below": 4.0,
           "chunked_over_exact_time_at_1k_2k_at_most": 1.25, "chunked_faster_than_exact_from": 8192}


def log(message):
    print(f"[long_context] {message}", file=sys.stderr, flush=True)


def child(implementation, length, steps, query_block, key_block):
    """Runs in the subprocess: build the layer, time the compiled step, print one JSON line."""
    sys.path.insert(0, ROOT)
    import tensorflow as tf

    from keras_transformers.layers import MultiHeadAttention
    from keras_transformers.ops import scaled_dot_product_attention

    layer = MultiHeadAttention(12, 64, attention_implementation=implementation)
    layer.build((1, length, 768))
    x = tf.random.normal([1, length, 768])
    g = tf.random.normal([1, length, 768])
    blocks = dict(query_block=query_block, key_block=key_block)

    @tf.function(jit_compile=True)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            q = layer._project(x, layer.query_kernel, layer.query_bias)
            k, v = layer.key_values(x)
            out = scaled_dot_product_attention(q, k, v, causal=True, implementation=implementation,
                                               **blocks)
            out = tf.einsum("bnsd,ndh->bsh", out, layer.output_kernel) + layer.output_bias
            loss = tf.reduce_sum(out * g)
        grads = tape.gradient(loss, [x] + [w.value for w in layer.trainable_weights])
        return loss, tf.add_n([tf.reduce_sum(t) for t in grads])

    start = time.perf_counter()
    step(x)[1].numpy()
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step(x)[1].numpy()
        times.append(time.perf_counter() - start)
    with open("/proc/self/status") as status:
        peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(json.dumps({"peak_rss_gb": round(peak_kib / 2**20, 3), "first_step_s": round(first, 3),
                      "step_s": [round(t, 4) for t in times],
                      "median_step_s": round(statistics.median(times), 4)}))


def run_one(implementation, length, steps, query_block, key_block, timeout):
    """A fresh process for one configuration: its result and peak RSS (or why it failed)."""
    command = [sys.executable, os.path.abspath(__file__), "--child", f"{implementation}:{length}",
               "--steps", str(steps), "--query-block", str(query_block), "--key-block", str(key_block)]
    load = os.getloadavg()[0]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s", "load_1min_before": load}
    result = {"load_1min_before": round(load, 2)}
    if done.returncode != 0:
        result["error"] = f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"
        return result
    result.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, help="implementation:length ...")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--query-block", type=int, default=512)
    parser.add_argument("--key-block", type=int, default=512)
    parser.add_argument("--timeout", type=int, default=1800)
    parser.add_argument("--output")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        implementation, length = args.child.split(":")
        return child(implementation, int(length), args.steps, args.query_block, args.key_block)

    results = {}
    for run in args.runs:
        implementation, length = run.split(":")
        log(f"{implementation} at {length} tokens ...")
        results.setdefault(length, {})[implementation] = result = run_one(
            implementation, int(length), args.steps, args.query_block, args.key_block, args.timeout)
        log(f"  {result}")
    for length, sides in results.items():
        if "median_step_s" in sides.get("exact", {}) and "median_step_s" in sides.get("chunked", {}):
            sides["time_chunked_over_exact"] = round(
                sides["chunked"]["median_step_s"] / sides["exact"]["median_step_s"], 3)
    import tensorflow as tf
    report = {"layer": "MultiHeadAttention(hidden 768, 12 heads x 64), causal, batch 1, fp32, "
                       "forward + backward in one XLA-compiled step",
              "peak_memory": "peak RSS (VmHWM) of a fresh child process per configuration",
              "query_block": args.query_block, "key_block": args.key_block, "steps": args.steps,
              "targets": TARGETS, "results": results,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "versions": {"tensorflow": tf.__version__, "python": platform.python_version()},
              "command": " ".join(["python", "benchmarks/long_context.py"] + sys.argv[1:])}
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
