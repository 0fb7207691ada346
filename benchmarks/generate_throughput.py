"""Generation speed of CausalLM.generate against KerasHub's GPT2CausalLM.generate, same shapes.

For each shape and batch size, both models (random weights, identical GPT-2 architecture)
greedily generate ``--new-tokens`` tokens after an 8-token prompt; tokens/s = batch·new
tokens / median wall time of a whole ``generate`` call, after a warm-up call that traces and
compiles. Both loops are XLA-compiled (KerasHub with ``compile(sampler="greedy",
jit_compile=True)``, its fastest setting). Calls alternate between the two sides.

``lm_head_alone_tokens_per_s`` times the output layer alone (``hidden · Eᵀ`` and the argmax,
``new_tokens`` times in one XLA loop, in the faster of its two forms: ``head_layout.py``): a
ceiling no greedy decoder of the shape can pass, which with GPT-2's 50,257-token vocabulary is
most of a small model's step.

Two more measurements make the cache visible:

* ``step_time``: the cached decoding step alone (one token, a cache of 1,100 slots) timed at
  positions 64, 512 and 1024: flat with a true cache; beside it, the uncached forward pass
  over the whole prefix at the same positions, which grows with the position.
* ``gpt2_small.memory_bound``: at batch 1 a ``gpt2_small`` step reads every weight once, so
  tokens/s cannot exceed ``bandwidth / weight bytes per token``. The bandwidth is measured
  here as the best of (a) a ``tf.reduce_sum`` over a 1 GiB float32 tensor and (b) a
  matrix-vector product with a 512 MiB matrix, the access pattern of a decoding step.

One JSON object goes to stdout (and to ``--output``); progress goes to stderr.

    python benchmarks/generate_throughput.py --shape all --output benchmarks/results/generate_throughput.json
    python benchmarks/generate_throughput.py --shape tiny --repeats 2   # quick check
"""

import argparse
import json
import os
import platform
import statistics
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
from keras_transformers.generation.sampling import argmax  # noqa: E402
from head_layout import FORMS, steps_per_s  # noqa: E402

PROMPT_LENGTH = 8
SHAPES = {
    # Our "tiny" preset's size as a GPT-2: overhead per step is everything.
    "tiny": dict(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64),
    # The issue's reference shape: 4 layers, width 128, GPT-2's 50,257-token vocabulary.
    "small": dict(vocab_size=50257, hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512),
    # GPT-2 124M.
    "gpt2_small": dict(vocab_size=50257, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072),
}
STEP_POSITIONS = (64, 512, 1024)


def log(message):
    print(f"[generate_throughput] {message}", file=sys.stderr, flush=True)


def our_model(shape, max_length):
    config = TransformerConfig.from_preset("gpt2_small", max_length=max_length, **SHAPES[shape])
    model = CausalLM(config)
    model.build(None)
    return model


def keras_hub_model(shape, max_length):
    s = SHAPES[shape]
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=s["vocab_size"], num_layers=s["num_layers"], num_heads=s["num_heads"],
        hidden_dim=s["hidden_size"], intermediate_dim=s["intermediate_size"], dropout=0.0,
        max_sequence_length=max_length)
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    model.compile(sampler="greedy", jit_compile=True)
    return model


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def generation_speed(shape, batch, new_tokens, repeats, without_xla=False):
    """Median seconds per generate call, ours and KerasHub's, alternating calls; with
    ``without_xla`` also ours with ``jit_compile=False`` (a TF graph loop, no XLA)."""
    max_length = PROMPT_LENGTH + new_tokens
    prompts = np.random.default_rng(0).integers(1, SHAPES[shape]["vocab_size"], (batch, PROMPT_LENGTH))
    ours, hub = our_model(shape, max(max_length, 64)), keras_hub_model(shape, max_length)
    hub_ids = np.zeros((batch, max_length), np.int32)
    hub_ids[:, :PROMPT_LENGTH] = prompts
    hub_inputs = {"token_ids": hub_ids, "padding_mask": hub_ids != 0}

    def run_ours(jit_compile=True):
        out = ours.generate(prompts, max_new_tokens=new_tokens, jit_compile=jit_compile)
        assert out["padding_mask"].sum() == batch * max_length  # no stop tokens: every token made

    def run_hub():
        hub.generate(hub_inputs, stop_token_ids=None)

    sides = {"ours": run_ours, "keras_hub": run_hub}
    if without_xla:
        sides["ours_without_xla"] = lambda: run_ours(jit_compile=False)
    compile_s = {name: timed(fn) for name, fn in sides.items()}  # first call: trace + compile
    times = {name: [] for name in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            times[name].append(timed(fn))
    result = {}
    for name in sides:
        median = statistics.median(times[name])
        result[name] = {"tokens_per_s": batch * new_tokens / median, "median_call_s": median,
                        "call_s_min_max": [min(times[name]), max(times[name])],
                        "first_call_s": compile_s[name]}
    result["speedup_ours_over_keras_hub"] = result["ours"]["tokens_per_s"] / result["keras_hub"]["tokens_per_s"]
    ceiling = lm_head_ceiling(ours, batch, new_tokens, max(3, repeats))
    result["lm_head_alone_tokens_per_s"] = ceiling
    for name in sides:
        result[name]["share_of_lm_head_alone"] = result[name]["tokens_per_s"] / ceiling
    if without_xla:
        log(f"{shape} batch {batch}: ours without XLA {result['ours_without_xla']['tokens_per_s']:.1f} tok/s")
    log(f"{shape} batch {batch}: ours {result['ours']['tokens_per_s']:.0f} tok/s, KerasHub "
        f"{result['keras_hub']['tokens_per_s']:.0f} tok/s, x{result['speedup_ours_over_keras_hub']:.2f}; "
        f"the output layer alone {ceiling:.0f} tok/s")
    return result


def lm_head_ceiling(model, batch, new_tokens, repeats):
    """Tokens/s of the output layer alone: ``new_tokens`` steps of (batch, hidden) · Eᵀ and the
    argmax, in one XLA while loop, in the faster of its two forms (``head_layout.py``). Every
    greedy decoder of this shape pays at least this."""
    embeddings = model.backbone.embeddings.token_embedding.embeddings.value
    forms = {name: FORMS[name] for name in ("transposed_dot", "single_row")}
    measured = steps_per_s(embeddings, batch, new_tokens, repeats, forms)
    return batch * max(measured.values())


def step_time(model, repeats, steps=17, cache_length=1100):
    """Median seconds of one cached decoding step (batch 1, a cache of ``cache_length`` slots)
    starting at each position, timed inside one compiled loop as the difference between
    ``steps`` steps and one step; and of the uncached forward pass over the prefix up to
    that position, which is what each step would cost without a cache."""
    _, step = model.generation_functions()

    @tf.function(jit_compile=True)
    def run(start, num_steps):
        cache = model.backbone.init_cache(1, cache_length)

        def body(i, token, cache):
            logits, cache = step(token, start + i, cache, ())
            return i + 1, argmax(logits), cache

        return tf.while_loop(lambda i, token, cache: i < num_steps, body,
                             (0, tf.constant([5]), cache))[1]

    forward = tf.function(lambda ids: model({"token_ids": ids, "padding_mask": tf.ones_like(ids)}),
                          jit_compile=True)
    result = {"cached_step_s": {}, "uncached_forward_s": {}}
    for position in STEP_POSITIONS:
        start = tf.constant([position])
        many, one = tf.constant(steps), tf.constant(1)
        run(start, one).numpy()  # compiles once: start and step count are inputs
        samples = []
        for _ in range(repeats):
            samples.append((timed(lambda: run(start, many).numpy())
                            - timed(lambda: run(start, one).numpy())) / (steps - 1))
        result["cached_step_s"][str(position)] = statistics.median(samples)
        ids = tf.fill([1, position + 1], 5)
        forward(ids)
        samples = [timed(lambda: forward(ids).numpy()) for _ in range(3)]
        result["uncached_forward_s"][str(position)] = statistics.median(samples)
    cached = list(result["cached_step_s"].values())
    result["cached_step_max_over_min"] = max(cached) / min(cached)
    log(f"step time at {STEP_POSITIONS}: cached {[f'{s * 1e3:.2f} ms' for s in cached]}, uncached "
        f"{[f'{s * 1e3:.1f} ms' for s in result['uncached_forward_s'].values()]}")
    return result


def memory_bandwidth_gb_s(repeats=7):
    """Read bandwidth, the best of four ways to stream float32 weights: a ``reduce_sum`` over
    1 GiB and a matrix-vector product with a 512 MiB matrix, each with XLA (whose CPU
    matrix-vector product runs on one thread) and without (TensorFlow's kernels, on every
    intra-op thread)."""
    big = tf.random.uniform([256, 1024, 1024])  # 1 GiB of float32
    matrix = tf.random.uniform([16384, 8192])  # 512 MiB
    vector = tf.random.uniform([1, 16384])
    result = {}
    for jit in (True, False):
        reduce = tf.function(tf.reduce_sum, jit_compile=jit)
        matvec = tf.function(tf.matmul, jit_compile=jit)
        reduce(big).numpy()
        matvec(vector, matrix).numpy()
        name = "xla" if jit else "tf"
        result[f"reduce_sum_{name}_gb_s"] = 2**30 / min(
            timed(lambda: reduce(big).numpy()) for _ in range(repeats)) / 1e9
        result[f"matvec_{name}_gb_s"] = 2**29 / min(
            timed(lambda: matvec(vector, matrix).numpy()) for _ in range(repeats)) / 1e9
    result["best_gb_s"] = max(result.values())
    return result


def memory_bound(model, measured):
    """Tokens/s a batch-1 step cannot beat: every weight read once per token (fp32).
    ``measured``: {side: tokens/s}; the best side is compared with the bound."""
    bandwidth = memory_bandwidth_gb_s()
    parameters = model.count_params()
    position_table = model.config.max_length * model.config.hidden_size  # only one row is read
    weight_bytes = 4 * (parameters - position_table + model.config.hidden_size)
    bound = bandwidth["best_gb_s"] * 1e9 / weight_bytes
    best_side = max(measured, key=measured.get)
    share = measured[best_side] / bound
    log(f"memory bound: {weight_bytes / 1e6:.0f} MB per token at {bandwidth['best_gb_s']:.1f} GB/s "
        f"= {bound:.1f} tok/s; {best_side} {measured[best_side]:.1f} tok/s ({share:.0%})")
    return {"bandwidth": bandwidth, "weight_bytes_per_token": weight_bytes,
            "bound_tokens_per_s": bound, "measured_tokens_per_s": measured,
            "share_of_bound": {side: value / bound for side, value in measured.items()},
            "best": best_side, "target_share": 0.8, "meets_target": share >= 0.8}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=[*SHAPES, "all"], default="all")
    parser.add_argument("--batch", type=int, action="append", help="batch sizes (default 1 and 8)")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per side (after one warm-up)")
    parser.add_argument("--step-repeats", type=int, default=50)
    parser.add_argument("--output")
    args = parser.parse_args()
    shapes = list(SHAPES) if args.shape == "all" else [args.shape]
    batches = args.batch or [1, 8]
    keras.utils.set_random_seed(0)

    results = {"benchmark": "generate_throughput", "new_tokens": args.new_tokens,
               "prompt_length": PROMPT_LENGTH, "decoding": "greedy", "repeats": args.repeats,
               "machine": {"platform": platform.platform(), "processor": platform.processor(),
                           "cpu_count": os.cpu_count(), "tensorflow": tf.__version__,
                           "keras": keras.__version__, "keras_hub": keras_hub.__version__},
               "shapes": {}}
    for shape in shapes:
        entry = {"config": SHAPES[shape]}
        repeats = args.repeats if shape != "gpt2_small" else max(2, args.repeats // 2)
        for batch in batches:
            without_xla = shape == "gpt2_small" and batch == 1
            entry[f"batch_{batch}"] = generation_speed(shape, batch, args.new_tokens, repeats, without_xla)
        if shape in ("small", "gpt2_small"):
            entry["step_time"] = step_time(our_model(shape, 1100), args.step_repeats)
        if shape == "gpt2_small" and 1 in batches:
            entry["memory_bound"] = memory_bound(our_model(shape, 1024), {
                side: entry["batch_1"][side]["tokens_per_s"] for side in ("ours", "ours_without_xla")})
        if shape != "gpt2_small":
            entry["target_speedup"] = 2.0
            entry["meets_target"] = all(entry[f"batch_{b}"]["speedup_ours_over_keras_hub"] >= 2.0
                                        for b in batches)
        results["shapes"][shape] = entry
    text = json.dumps(results, indent=2)
    print(text)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as file:
            file.write(text + "\n")


if __name__ == "__main__":
    main()
