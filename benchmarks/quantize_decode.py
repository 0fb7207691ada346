"""Weight-only int8 (``model.quantize("int8")``) against float32: decoding speed and quality.

Three measurements, one JSON object on stdout (and ``--output``); progress on stderr.

* ``decode``: batch-1 greedy ``CausalLM.generate`` of ``--new-tokens`` tokens after an 8-token
  prompt, a ``gpt2_small``-shaped model (random weights), float32 and its int8 copy (same
  weights, then ``quantize("int8")``) in the same process; calls alternate, tokens/s from the
  median wall time after a warm-up call that compiles. Also each model's weight bytes and the
  largest logit difference over the prompt.
* ``matvec_ms``: the step's access pattern alone: one row times 24 distinct ``768 x 3072``
  kernels (226 MB as float32) in one XLA function: float32; int8 output-major ``(out, in)``
  through ``int8_matmul`` (the form the layers use); int8 ``(in, out)`` dequantized then
  multiplied; Keras-style int8 x int8 (inputs quantized too, int32 product). It shows
  whether XLA fuses the dequantization into the product (it does only in the first form).
* ``quality``: a character GPT (4 layers, width 128, context 64) trained ``--train-steps`` steps on tiny
  Shakespeare (the copy shipped in keras_transformers.data), then validation perplexity on the
  last 10% of the text, float32 and int8.

    python benchmarks/quantize_decode.py --output benchmarks/results/quantize_decode.json
    python benchmarks/quantize_decode.py --quick     # a smoke run: tiny decode, 20 train steps
"""

import argparse
import json
import warnings
import os
import platform
import statistics
import sys
import time

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from keras_transformers import CausalLM, TransformerConfig  # noqa: E402
from keras_transformers.data.corpora import tiny_shakespeare  # noqa: E402
from keras_transformers.layers.quantization import abs_max_quantize, int8_matmul  # noqa: E402


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def weight_bytes(model):
    return int(sum(v.numpy().nbytes for v in model.variables))


def decode(preset, new_tokens, repeats):
    config = TransformerConfig.from_preset(preset, dropout=0.0, attention_dropout=0.0)
    if preset == "tiny":
        config = config.replace(vocab_size=50257)
    ids = np.random.default_rng(0).integers(1, config.vocab_size, (1, 8)).astype("int32")
    inputs = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    reference, quantized = CausalLM(config), CausalLM(config)
    reference(inputs), quantized(inputs)
    quantized.set_weights(reference.get_weights())
    start = time.perf_counter()
    quantized.quantize("int8")
    quantize_s = time.perf_counter() - start
    difference = float(np.max(np.abs(np.asarray(reference(inputs)) - np.asarray(quantized(inputs)))))
    models = {"float32": reference, "int8": quantized}
    times = {name: [] for name in models}
    for name, model in models.items():
        log(f"decode: compiling {name}")
        model.generate(ids, new_tokens)
    for repeat in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model.generate(ids, new_tokens)
            times[name].append(time.perf_counter() - start)
        log(f"decode: repeat {repeat + 1}/{repeats}: " + ", ".join(f"{n} {t[-1]:.2f}s" for n, t in times.items()))
    result = {"preset": preset, "batch": 1, "prompt_length": 8, "new_tokens": new_tokens, "repeats": repeats,
              "quantize_seconds": round(quantize_s, 2), "max_abs_logit_difference": difference,
              "max_abs_logit": float(np.max(np.abs(np.asarray(reference(inputs)))))}
    for name, model in models.items():
        result[name] = {"tokens_per_s": round(new_tokens / statistics.median(times[name]), 2),
                        "seconds": [round(t, 3) for t in times[name]], "weight_bytes": weight_bytes(model)}
    result["speedup"] = round(result["int8"]["tokens_per_s"] / result["float32"]["tokens_per_s"], 3)
    result["weight_bytes_ratio"] = round(result["float32"]["weight_bytes"] / result["int8"]["weight_bytes"], 3)
    return result


def matvec(repeats=15, count=24, fan_in=768, fan_out=3072):
    rng = np.random.default_rng(0)
    floats = [rng.normal(0, 0.02, (fan_in, fan_out)).astype("float32") for _ in range(count)]
    pairs = [abs_max_quantize(w.T) for w in floats]  # output-major (out, in), scale (out,)
    float_vars = [tf.Variable(w) for w in floats]
    out_major = [(tf.Variable(q), tf.Variable(s)) for q, s in pairs]
    in_major = [(tf.Variable(np.ascontiguousarray(q.T)), s) for q, s in pairs]
    x = tf.constant(rng.normal(size=(1, 1, fan_in)).astype("float32"))

    def quantize_rows(x):
        scale = tf.reduce_max(tf.abs(x), axis=-1, keepdims=True) / 127.0
        return tf.cast(tf.round(x / scale), tf.int8), scale

    forms = {
        "float32": lambda x: [tf.matmul(x, w) for w in float_vars],
        "int8_output_major_weight_only": lambda x: [int8_matmul(x, q, s) for q, s in out_major],
        "int8_input_major_dequantized": lambda x: [tf.matmul(x, tf.cast(q, tf.float32)) * s for q, s in in_major],
        "int8_x_int8_keras_style": lambda x: [
            tf.cast(tf.matmul(quantize_rows(x)[0], q, output_type=tf.int32), tf.float32) * s * quantize_rows(x)[1]
            for q, s in in_major],
    }
    result = {"kernels": count, "kernel_shape": [fan_in, fan_out], "float32_megabytes": round(count * fan_in * fan_out * 4 / 1e6, 1)}
    for name, form in forms.items():
        function = tf.function(lambda x, form=form: tf.add_n([tf.reduce_sum(y) for y in form(x)]), jit_compile=True)
        function(x).numpy()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            function(x).numpy()
            times.append(time.perf_counter() - start)
        result[name] = round(statistics.median(times) * 1e3, 2)
        log(f"matvec: {name} {result[name]} ms")
    return result


def quality(train_steps, context=64, batch=32, eval_windows=512, learning_rate=2e-3):
    text = tiny_shakespeare()
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    ids = np.array([lookup[c] for c in text], np.int32)
    split = int(len(ids) * 0.9)
    train, valid = ids[:split], ids[split:]
    config = TransformerConfig(vocab_size=len(chars), hidden_size=128, num_layers=4, num_heads=4,
                               intermediate_size=512, max_length=context, norm_first=True,
                               activation="gelu_approximate", embedding_norm=False, dropout=0.0,
                               attention_dropout=0.0)
    keras.utils.set_random_seed(0)
    model = CausalLM(config)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate))
    rng = np.random.default_rng(0)

    def windows(source, n, rng):
        starts = rng.integers(0, len(source) - context - 1, n)
        rows = np.stack([source[s:s + context + 1] for s in starts])
        return {"token_ids": rows[:, :-1], "padding_mask": np.ones((n, context), np.int32)}, rows[:, 1:]

    x, y = windows(train, train_steps * batch, rng)
    log(f"quality: training {train_steps} steps")
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    train_s = time.perf_counter() - start
    vx, vy = windows(valid, eval_windows, np.random.default_rng(1))

    def perplexity(model):
        logits = model.predict(vx, batch_size=64, verbose=0)
        loss = tf.keras.losses.sparse_categorical_crossentropy(vy, logits, from_logits=True)
        return float(np.exp(np.mean(loss)))

    float_ppl = perplexity(model)
    model.quantize("int8")
    int8_ppl = perplexity(model)
    log(f"quality: perplexity float32 {float_ppl:.4f}, int8 {int8_ppl:.4f}")
    return {"corpus": "tiny Shakespeare (keras_transformers.data), characters, last 10% for validation",
            "model": f"CausalLM vocab 65, 4 layers, width 128, 4 heads, FFN 512, context {context}",
            "train_steps": train_steps, "batch": batch, "learning_rate": learning_rate, "train_seconds": round(train_s, 1),
            "final_train_loss": round(float(history.history["loss"][-1]), 4),
            "eval_windows": eval_windows, "float32_perplexity": round(float_ppl, 4),
            "int8_perplexity": round(int8_ppl, 4),
            "relative_increase": round(int8_ppl / float_ppl - 1.0, 5)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="gpt2_small")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=1500)
    parser.add_argument("--quick", action="store_true", help="tiny decode model, 20 training steps")
    parser.add_argument("--output")
    args = parser.parse_args()
    # Model.quantize warns for every layer without weights to quantize (norms, dropout).
    warnings.filterwarnings("ignore", message=".*does not have a `quantize` method")
    if args.quick:
        args.preset, args.new_tokens, args.repeats, args.train_steps = "tiny", 8, 2, 20
    started = time.perf_counter()
    result = {"benchmark": "quantize_decode", "platform": platform.platform(), "cpus": os.cpu_count(),
              "tensorflow": tf.__version__, "keras": keras.__version__,
              "command": " ".join(["python", *sys.argv])}
    result["matvec_ms"] = matvec(repeats=5 if args.quick else 15)
    result["decode"] = decode(args.preset, args.new_tokens, args.repeats)
    result["quality"] = quality(args.train_steps)
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
