"""Execute notebooks in place, as the committed ones were, and stamp the mode in their first cell.

    python notebooks/execute.py 02_encoder_sentiment.ipynb            # full mode
    python notebooks/execute.py --small 01_attention_from_scratch.ipynb   # KERAS_TRANSFORMERS_SMALL=1

Each notebook runs top to bottom in a fresh kernel with ``notebooks/`` as its working directory
(``KERAS_TRANSFORMERS_DATA`` is passed through), and is written back with its outputs. Its first
(markdown) cell gets one line, ``*Outputs: ...*``, saying which mode produced them, on what
machine, with which TensorFlow, and how long the run took. Needs ``pip install ".[notebooks]"``.
"""

import argparse
import datetime
import os
import pathlib
import platform
import re
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
STAMP = re.compile(r"^\*Outputs:.*\*$", re.M)


def machine():
    from importlib.metadata import version  # the kernel's environment is this one

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = os.path.exists("/proc/driver/nvidia/gpus") and os.listdir("/proc/driver/nvidia/gpus")
    device = "GPU machine" if gpu else f"{cpus}-core CPU, no GPU"
    return f"{device} ({platform.machine()}, {platform.system()}), TensorFlow {version('tensorflow')}"


def execute(path, small, timeout):
    import nbclient
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    env_small = os.environ.get("KERAS_TRANSFORMERS_SMALL")
    os.environ.pop("KERAS_TRANSFORMERS_SMALL", None)
    if small:
        os.environ["KERAS_TRANSFORMERS_SMALL"] = "1"
    started = time.perf_counter()
    try:
        nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                # TensorFlow's C++ start-up lines (oneDNN, CUDA probing) are
                                # written before its log level applies: keep them out of the
                                # committed outputs (they go to this process's stderr).
                                extra_arguments=["--IPKernelApp.capture_fd_output=False"],
                                resources={"metadata": {"path": str(HERE)}}).execute()
    finally:
        os.environ.pop("KERAS_TRANSFORMERS_SMALL", None)
        if env_small is not None:
            os.environ["KERAS_TRANSFORMERS_SMALL"] = env_small
    seconds = time.perf_counter() - started
    mode = "small mode (KERAS_TRANSFORMERS_SMALL=1)" if small else "full mode"
    stamp = (f"*Outputs: {mode}, executed {datetime.date.today().isoformat()} on a {machine()}, "
             f"{seconds / 60:.1f} min top to bottom (`python notebooks/execute.py"
             f"{' --small' if small else ''} {path.name}`).*")
    first = notebook.cells[0]
    first.source = STAMP.sub(stamp, first.source) if STAMP.search(first.source) else first.source + "\n\n" + stamp
    notebook.metadata.setdefault("keras_transformers", {})["executed"] = {
        "mode": "small" if small else "full", "seconds": round(seconds, 1)}
    nbformat.write(notebook, path)
    print(f"{path.name}: {mode}, {seconds:.1f} s", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="+")
    parser.add_argument("--small", action="store_true", help="KERAS_TRANSFORMERS_SMALL=1")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    args = parser.parse_args(argv)
    for name in args.notebooks:
        path = pathlib.Path(name)
        if not path.is_absolute() and not path.exists():
            path = HERE / path
        execute(path.resolve(), args.small, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
