"""Long context: peak memory and time of exact vs chunked attention, forward + backward.

One :class:`MultiHeadAttention` layer (hidden 768, 12 heads of 64, causal, batch 1), the loss
``sum(outputs · g)`` and its gradient with respect to the input and every weight, in one
``tf.function(jit_compile=True)`` step. Every configuration runs in a fresh Python process;
its peak memory is that child's peak resident set (``VmHWM`` of ``/proc/self/status``:
TensorFlow's own ~0.5 GB, XLA compilation and the step). Time is the median of ``--steps``
steps after one warm-up (compiling) step. One JSON object goes to stdout and ``--output``.

    python benchmarks/long_context.py --output benchmarks/results/long_context.json
    python benchmarks/long_context.py --runs exact:1024 chunked:1024 --steps 2   # quick check

``--model`` measures whole models instead (``results/long_context_model.json``): a
``gpt2_small``-shaped :class:`CausalLM` (12 layers, hidden 768, 12 heads, vocabulary 50,257,
``max_length`` 8,192) taking training steps (``compile()`` defaults, XLA; ``train_on_batch``,
batch 1, AdamW) with chunked attention and rematerialized blocks (``lm_chunked``) or exact
attention without remat (``lm_exact``); KerasHub's ``GPT2CausalLM`` of the same shape
(``keras_hub``); and cached generation after an ~8k-token prompt (``generate``). Each run is a
child process watched by the parent: when its RSS passes ``--memory-limit-gb`` (at most the
machine's available memory less a margin) it is killed and reported "out of memory".

    python benchmarks/long_context.py --model --output benchmarks/results/long_context_model.json
    python benchmarks/long_context.py --model --runs lm_chunked:2048 keras_hub:2048 --steps 1
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
# exact at 16k would need ~45 GB (scores 12 × 16k² float32, twice): not run on a 24 GB machine.
DEFAULT_RUNS = ["exact:1024", "chunked:1024", "exact:2048", "chunked:2048", "exact:4096",
                "chunked:4096", "exact:8192", "chunked:8192", "chunked:16384", "chunked:32768"]
# Model runs, the slowest last: exact and KerasHub at 8k are expected to run out of memory;
# chunked without remat beside chunked with it measures what remat saves.
DEFAULT_MODEL_RUNS = ["lm_chunked:2048", "lm_chunked_no_remat:2048", "lm_exact:2048",
                      "keras_hub:2048", "lm_chunked:4096", "lm_chunked_no_remat:4096",
                      "lm_exact:4096", "keras_hub:4096", "generate:8192", "keras_hub:8192",
                      "lm_exact:8192", "lm_chunked:8192", "lm_chunked_no_remat:8192"]
MODEL_KINDS = {  # kind -> (our attention implementation, remat); None: KerasHub / generation
    "lm_chunked": ("chunked", True), "lm_exact": ("exact", False),
    "lm_chunked_no_remat": ("chunked", False), "lm_exact_remat": ("exact", True),
    "keras_hub": None, "generate": None}
MODEL_MAX_LENGTH = 8192
# 1 and 160 new tokens time the cached step over many steps (their difference / 159), so
# that the prefill's noise under load does not swamp it; 16 is the reported call.
GENERATE_PROMPT, GENERATE_NEW, GENERATE_LONG = 8000, 16, 160
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


def peak_rss_gb():
    with open("/proc/self/status") as status:
        return round(next(int(line.split()[1]) for line in status
                          if line.startswith("VmHWM:")) / 2**20, 3)


def gpt2_small_config(implementation, remat, dropout):
    from keras_transformers import TransformerConfig

    return TransformerConfig.from_preset(
        "gpt2_small", max_length=MODEL_MAX_LENGTH, attention_implementation=implementation,
        remat=remat, dropout=dropout, attention_dropout=dropout)


def child_train(kind, length, steps, dropout):
    """Runs in the subprocess: one model, ``1 + steps`` ``train_on_batch`` calls, one JSON line."""
    sys.path.insert(0, ROOT)
    import keras
    import numpy as np

    ids = np.random.default_rng(0).integers(1, 50257, size=(1, length + 1), dtype=np.int32)
    x = {"token_ids": ids[:, :-1], "padding_mask": np.ones((1, length), np.int32)}
    y, extra = ids[:, 1:], {}
    optimizer = keras.optimizers.AdamW(1e-4)
    if kind == "keras_hub":
        import keras_hub

        backbone = keras_hub.models.GPT2Backbone(
            vocabulary_size=50257, num_layers=12, num_heads=12, hidden_dim=768,
            intermediate_dim=3072, dropout=dropout, max_sequence_length=MODEL_MAX_LENGTH)
        model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
        model.compile(optimizer=optimizer, jit_compile=True)  # its own default is not XLA on TF
        extra["sample_weight"] = np.ones((1, length), np.float32)  # ours weighs by padding_mask
        described = ("keras_hub.models.GPT2CausalLM(GPT2Backbone 12 x 768, 12 heads, "
                     "max_sequence_length 8192)")
    else:
        from keras_transformers import CausalLM

        implementation, remat = MODEL_KINDS[kind]
        model = CausalLM(gpt2_small_config(implementation, remat, dropout))
        model.compile(optimizer=optimizer)  # defaults: cross-entropy on logits, XLA on
        described = (f"CausalLM(gpt2_small, attention_implementation={implementation!r}, "
                     f"remat={remat})")
    start = time.perf_counter()
    first_loss = float(model.train_on_batch(x, y, **extra, return_dict=True)["loss"])
    first = time.perf_counter() - start
    times, losses = [], [first_loss]
    for _ in range(steps):
        start = time.perf_counter()
        losses.append(float(model.train_on_batch(x, y, **extra, return_dict=True)["loss"]))
        times.append(time.perf_counter() - start)
    result = {"model": described, "parameters": int(model.count_params()),
              "jit_compile": bool(model.jit_compile), "peak_rss_gb": peak_rss_gb(),
              "first_step_s": round(first, 2), "step_s": [round(t, 2) for t in times],
              "losses": [round(v, 4) for v in losses]}
    if times:
        result["median_step_s"] = round(statistics.median(times), 2)
        result["tokens_per_s"] = round(length / statistics.median(times), 1)
    print(json.dumps(result))


def child_generate(length, dropout):
    """Runs in the subprocess: a ~8k-token prompt, then cached greedy generation (one JSON line).

    ``generate`` is one compiled loop (prefill, then one cached step per token) whose buffer
    is bucketed to ``bucket(prompt + new) = 8192`` for 1, 16 and 160 new tokens alike, so after
    a compiling call, ``(t(160) - t(1)) / 159`` is one cached step (over a cache of 8,192
    positions) and ``t(1)`` less one step the prefill."""
    sys.path.insert(0, ROOT)
    import numpy as np

    from keras_transformers import CausalLM

    config = gpt2_small_config("chunked", True, dropout)
    model = CausalLM(config)
    prompt_len = min(GENERATE_PROMPT, length - GENERATE_LONG)
    prompt = np.random.default_rng(0).integers(1, 50257, size=(1, prompt_len), dtype=np.int32)
    mask = np.ones_like(prompt)

    def timed(new):
        start = time.perf_counter()
        out = model.generate(prompt, new, padding_mask=mask)
        assert out["token_ids"].shape == (1, prompt_len + new), out["token_ids"].shape
        return time.perf_counter() - start

    first = timed(GENERATE_NEW)
    one, full, long = timed(1), timed(GENERATE_NEW), timed(GENERATE_LONG)
    step = (long - one) / (GENERATE_LONG - 1)
    head_dim = config.hidden_size // config.num_heads
    kv_heads = config.num_key_value_heads or config.num_heads

    def cache_bytes(width):  # keys and values, every layer, batch 1, float32
        return 2 * config.num_layers * 1 * kv_heads * width * head_dim * 4

    print(json.dumps({
        "model": "CausalLM(gpt2_small, attention_implementation='chunked'), greedy, batch 1",
        "prompt_tokens": prompt_len, "new_tokens": GENERATE_NEW, "buffer_width": length,
        "kv_cache_formula": "2 * layers * batch * kv_heads * width * head_dim * 4 bytes",
        "kv_cache_gb_at_buffer_width": round(cache_bytes(length) / 1e9, 3),
        "kv_cache_gb_at_prompt_plus_new": round(cache_bytes(prompt_len + GENERATE_NEW) / 1e9, 3),
        "peak_rss_gb": peak_rss_gb(), "first_call_s_compiles": round(first, 2),
        "call_1_new_token_s": round(one, 2), f"call_{GENERATE_NEW}_new_tokens_s": round(full, 2),
        f"call_{GENERATE_LONG}_new_tokens_s": round(long, 2),
        "per_token_step_s": round(step, 4), "prefill_s": round(one - step, 2),
        "prefill_tokens_per_s": round(prompt_len / (one - step), 1)}))


def rss_gb(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        return kib / 2**20
    except (OSError, StopIteration):
        return 0.0


def available_gb():
    with open("/proc/meminfo") as meminfo:
        return next(int(line.split()[1]) for line in meminfo
                    if line.startswith("MemAvailable:")) / 2**20


def run_model(kind, length, steps, dropout, timeout, memory_limit_gb):
    """A fresh, watched process for one model configuration: killed past the memory limit."""
    command = [sys.executable, os.path.abspath(__file__), "--model", "--child", f"{kind}:{length}",
               "--steps", str(steps), "--dropout", str(dropout)]
    limit = round(min(memory_limit_gb, available_gb() - 1.5), 2)
    result = {"load_1min_before": round(os.getloadavg()[0], 2), "memory_limit_gb": limit}
    start = time.perf_counter()
    with open(os.devnull, "w") as devnull:
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            process = subprocess.Popen(command, stdout=out, stderr=err, stdin=devnull)
            highest, why = 0.0, None
            while process.poll() is None:
                current = rss_gb(process.pid)
                highest = max(highest, current)
                elapsed = time.perf_counter() - start
                if current > limit:
                    why = (f"out of memory: RSS passed the {limit} GB limit after {elapsed:.0f} s "
                           f"(killed at {current:.2f} GB)")
                elif elapsed > timeout:
                    why = (f"did not finish in {timeout} s (RSS {current:.2f} GB, "
                           f"highest {highest:.2f})")
                if why:
                    process.kill()
                    process.wait()
                    break
                time.sleep(0.05)
            result["wall_s"] = round(time.perf_counter() - start, 1)
            result["highest_rss_seen_gb"] = round(highest, 3)
            out.seek(0), err.seek(0)
            stdout, stderr = out.read(), err.read()
    if why:
        result["error"] = why
    elif process.returncode != 0:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        # XLA's own out-of-memory says how much one buffer needed: keep that line.
        oom = [line for line in lines if "Out of memory while trying to allocate" in line
               or "OOM when allocating" in line]
        result["error"] = f"exit {process.returncode}: {(oom[:1] or lines[-3:])}"
    else:
        result.update(json.loads(stdout.strip().splitlines()[-1]))
    return result


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
    parser.add_argument("--runs", nargs="+", help="implementation:length ... (layer) or "
                        f"kind:length ... with --model, kinds {sorted(MODEL_KINDS)}")
    parser.add_argument("--model", action="store_true", help="whole models, not one layer")
    parser.add_argument("--steps", type=int, help="timed steps after the compiling one "
                        "(default 3; 1 with --model)")
    parser.add_argument("--dropout", type=float, default=0.0, help="--model: dropout of both sides")
    parser.add_argument("--memory-limit-gb", type=float, default=20.0,
                        help="--model: kill a child whose RSS passes this")
    parser.add_argument("--query-block", type=int, default=512)
    parser.add_argument("--key-block", type=int, default=512)
    parser.add_argument("--timeout", type=int, default=1800)
    parser.add_argument("--output")
    parser.add_argument("--append", action="store_true",
                        help="--model: add to the results already in --output")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.steps is None:
        args.steps = 1 if args.model else 3
    if args.child:
        implementation, length = args.child.split(":")
        if args.model and implementation == "generate":
            return child_generate(int(length), args.dropout)
        if args.model:
            return child_train(implementation, int(length), args.steps, args.dropout)
        return child(implementation, int(length), args.steps, args.query_block, args.key_block)
    if args.model:
        return main_model(args)
    args.runs = args.runs or DEFAULT_RUNS

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


def main_model(args):
    """The ``--model`` runs, each in a watched child; the JSON is rewritten after every run."""
    from importlib.metadata import version  # not TensorFlow itself: the parent stays small

    runs = args.runs or DEFAULT_MODEL_RUNS
    for run in runs:
        if run.split(":")[0] not in MODEL_KINDS:
            raise SystemExit(f"unknown model run {run!r}: kinds are {sorted(MODEL_KINDS)}")
    report = {"model": "gpt2_small shape: 12 layers, hidden 768, 12 heads x 64, intermediate 3072, "
                       "vocabulary 50257, tied embeddings, max_length 8192, fp32, batch 1",
              "kinds": {"lm_chunked": "our CausalLM, attention_implementation='chunked', "
                                      "remat=True",
                        "lm_exact": "our CausalLM, attention_implementation='exact', remat=False",
                        "lm_chunked_no_remat": "our CausalLM, 'chunked', remat=False",
                        "keras_hub": "keras_hub.models.GPT2CausalLM, GPT2Backbone of the "
                                     "same shape",
                        "generate": f"our CausalLM (chunked), a {GENERATE_PROMPT}-token prompt, "
                                    f"{GENERATE_NEW} new tokens, greedy, KV cache"},
              "training": "train_on_batch, AdamW(1e-4), one compiling step then --steps timed; "
                          "tokens/s = context / median timed step",
              "dropout": args.dropout, "steps": args.steps,
              "peak_memory": "peak RSS (VmHWM) of a fresh child process per configuration; a child "
                             "whose RSS passes memory_limit_gb is killed (\"out of memory\")",
              "results": {},
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "memory_gb": round(os.sysconf("SC_PAGE_SIZE")
                                             * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
              "versions": {"tensorflow": version("tensorflow"), "keras": version("keras"),
                           "keras_hub": version("keras-hub"), "python": platform.python_version()},
              "command": " ".join(["python", "benchmarks/long_context.py"] + sys.argv[1:])}
    if args.append and args.output and os.path.exists(args.output):
        with open(args.output) as handle:
            before = json.load(handle)
        report["results"] = before["results"]
        report["command"] = before["command"] + " ; then " + report["command"]
    for run in runs:
        kind, length = run.split(":")
        log(f"{kind} at {length} tokens ...")
        result = run_model(kind, int(length), args.steps, args.dropout, args.timeout,
                           args.memory_limit_gb)
        report["results"].setdefault(length, {})[kind] = result
        log(f"  {result}")
        if args.output:
            with open(args.output, "w") as handle:
                handle.write(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
