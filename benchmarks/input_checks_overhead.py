"""What the input checks on the compiled path cost: a training step with them against the same
step without them, both XLA-compiled, in one process, on nanoGPT's CPU shape.

With ``jit_compile=True`` a task model checks each batch (token ids and labels in range, masks
0/1) in Keras' per-step function, outside XLA, and then runs the XLA-compiled step. The peer
here is the same model with Keras' own step functions (the whole step under XLA, no checks).
Both train on the same batches; rounds alternate (checked, unchecked, unchecked, checked, ...)
so that load from other processes falls on both alike. One JSON object goes to stdout (and to
``--output``): median step times and their ratio.

    python benchmarks/input_checks_overhead.py --steps 200 --rounds 6
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import keras_transformers as kt  # noqa: E402


class UncheckedCausalLM(kt.CausalLM):
    """The peer: Keras' own step functions, the whole step under XLA, no batch checks."""

    _make_function = keras.Model._make_function
    make_predict_function = keras.Model.make_predict_function
    train_step = keras.Model.train_step


class StepTimes(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self.started)


def make_model(model_class, seed):
    keras.utils.set_random_seed(seed)
    config = kt.TransformerConfig.from_preset(
        "gpt2_small", vocab_size=65, hidden_size=128, num_layers=4, num_heads=4,
        intermediate_size=512, max_length=64, dropout=0.0, attention_dropout=0.0)
    model = model_class(config)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), jit_compile=True)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=6, help="rounds per side (alternating)")
    parser.add_argument("--output", help="also write the JSON here")
    args = parser.parse_args()

    batch, context = 12, 64
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 65, (args.steps * batch, context + 1)).astype("int32")
    x = {"token_ids": ids[:, :-1], "padding_mask": np.ones((len(ids), context), "int32")}
    y = ids[:, 1:]
    models = {"checked": make_model(kt.CausalLM, 0), "unchecked": make_model(UncheckedCausalLM, 0)}
    times = {name: [] for name in models}
    for model in models.values():  # compile and warm up
        model.fit(x, y, batch_size=batch, epochs=1, steps_per_epoch=20, shuffle=False, verbose=0)
    order = ["checked", "unchecked", "unchecked", "checked"] * ((args.rounds + 1) // 2)
    for name in order[:2 * args.rounds]:
        timer = StepTimes()
        timer.times = times[name]
        models[name].fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=[timer])
        print(f"[input_checks_overhead] {name}: {len(times[name])} steps timed", file=sys.stderr, flush=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "benchmark": "input_checks_overhead",
        "shape": "nanoGPT CPU: 4 layers, width 128, context 64, batch 12, vocabulary 65",
        "steps_timed_per_side": len(times["checked"]),
        "median_step_ms": {name: round(value * 1e3, 3) for name, value in medians.items()},
        "ratio_checked_over_unchecked": round(medians["checked"] / medians["unchecked"], 4),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "command": " ".join(["python", *sys.argv]),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as file:
            file.write(text + "\n")


if __name__ == "__main__":
    main()
