"""Wall time of the char-level GPT anchor against nanoGPT, back to back on the same machine.

nanoGPT is the peer the char_gpt row's target names ("in less wall time than nanoGPT on the same
machine"). This script runs both whole commands, one after the other, each ``--repeats`` times
alternating, and writes ``benchmarks/results/char_gpt_vs_nanogpt.json``: the median wall time of
each (process start to exit: imports, data, compilation, training, evaluation), the ratio, and
each run's final validation loss.

nanoGPT is not a dependency and cannot be downloaded here: pass a checkout of
github.com/karpathy/nanoGPT and a Python with torch and numpy. Its data step
(``data/shakespeare_char/prepare.py``) is run once on the same ``input.txt`` this repository's
script reads, so it downloads nothing.

    python benchmarks/anchors/char_gpt_vs_nanogpt.py ../shared/data/tinyshakespeare \\
        --nanogpt-dir ~/nanoGPT --nanogpt-python ~/venvs/torch/bin/python
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runner  # noqa: E402

# nanoGPT README, "I only have a macbook": its CPU command for this configuration.
NANOGPT_ARGUMENTS = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False",
                     "--eval_iters=20", "--log_interval=1", "--block_size=64", "--batch_size=12",
                     "--n_layer=4", "--n_head=4", "--n_embd=128", "--max_iters=2000",
                     "--lr_decay_iters=2000", "--dropout=0.0"]


def timed(command, cwd=None):
    """``(wall seconds, stdout + stderr)`` of a whole command; raises if it fails."""
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n"
                           f"{(result.stdout + result.stderr)[-3000:]}")
    return wall, result.stdout + result.stderr


def nanogpt_val_loss(output):
    """The last ``step N: train loss a, val loss b`` line's ``b``."""
    found = re.findall(r"step \d+: train loss [\d.]+, val loss ([\d.]+)", output)
    if not found:
        raise RuntimeError(f"no 'val loss' line in nanoGPT's output:\n{output[-2000:]}")
    return float(found[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir", help="the directory with tiny Shakespeare's input.txt")
    parser.add_argument("--nanogpt-dir", required=True, help="a checkout of karpathy/nanoGPT")
    parser.add_argument("--nanogpt-python", required=True, help="a Python with torch and numpy")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command (median)")
    parser.add_argument("--smoke", action="store_true",
                        help="a few steps of each (checks the script, measures nothing)")
    parser.add_argument("--output-dir", default=os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "results"))
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    text = os.path.join(args.data_dir, "input.txt")
    data = os.path.join(args.nanogpt_dir, "data", "shakespeare_char")
    if not os.path.isfile(os.path.join(args.nanogpt_dir, "train.py")) or not os.path.isdir(data):
        parser.error(f"--nanogpt-dir {args.nanogpt_dir!r} is not a nanoGPT checkout "
                     "(no train.py or data/shakespeare_char)")
    shutil.copyfile(text, os.path.join(data, "input.txt"))  # prepare.py then downloads nothing
    timed([args.nanogpt_python, "prepare.py"], cwd=data)

    ours_script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "char_gpt.py")
    walls = {"nanogpt": [], "keras_transformers": []}
    losses = {"nanogpt": [], "keras_transformers": []}
    nanogpt_arguments, our_arguments = NANOGPT_ARGUMENTS, []
    if args.smoke:
        nanogpt_arguments = NANOGPT_ARGUMENTS + ["--max_iters=20", "--lr_decay_iters=20",
                                                 "--eval_interval=10", "--eval_iters=2"]
        our_arguments = ["--smoke"]
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="nanogpt_") as output_dir:
            wall, output = timed([args.nanogpt_python, "train.py", *nanogpt_arguments,
                                  f"--out_dir={output_dir}"], cwd=args.nanogpt_dir)
        walls["nanogpt"].append(wall)
        losses["nanogpt"].append(nanogpt_val_loss(output))
        with tempfile.TemporaryDirectory(prefix="char_gpt_") as output_dir:  # a fresh run each time
            wall, _ = timed([sys.executable, ours_script, args.data_dir, "--output-dir", output_dir,
                             *our_arguments])
            name = "char_gpt_smoke.json" if args.smoke else "char_gpt.json"
            with open(os.path.join(output_dir, name)) as file:
                result = json.load(file)
        walls["keras_transformers"].append(wall)
        losses["keras_transformers"].append(result["val_loss_nanogpt_estimate"])
        runner.log("char_gpt_vs_nanogpt", f"run {repeat + 1}: nanoGPT {walls['nanogpt'][-1]:.1f} s, "
                                          f"ours {wall:.1f} s")

    medians = {name: statistics.median(values) for name, values in walls.items()}
    summary = {
        "task": "char_gpt_vs_nanogpt", "smoke": args.smoke,
        "metric": "median whole-command wall time (s), 2,000 steps, nanoGPT's CPU configuration",
        "median_wall_s": {name: round(value, 3) for name, value in medians.items()},
        "ratio_ours_over_nanogpt": round(medians["keras_transformers"] / medians["nanogpt"], 3),
        "wall_s": {name: [round(value, 3) for value in values] for name, values in walls.items()},
        "val_loss_estimate": losses,
        "val_loss_definition": "each tool's own estimate: mean over 20 random 12x64 batches of the "
                               "last 10%",
        "nanogpt_command": " ".join(["python", "train.py", *nanogpt_arguments]),
        "our_command": " ".join(["python benchmarks/anchors/char_gpt.py <data_dir>", *our_arguments]),
        "machine": runner.machine(),
    }
    os.makedirs(args.output_dir, exist_ok=True)
    name = "char_gpt_vs_nanogpt" + ("_smoke" if args.smoke else "") + ".json"
    with open(os.path.join(args.output_dir, name), "w") as file:
        json.dump(summary, file, indent=2)
    print(json.dumps({key: summary[key] for key in ("median_wall_s", "ratio_ours_over_nanogpt")}))
    return summary


if __name__ == "__main__":
    main()
