"""The ``keras-transformers`` command's front door: the argument parser and the quiet start-up.

Standard library only, so that ``keras-transformers --help`` (and ``train --help``, ...) answers
at once: importing ``keras_transformers`` imports TensorFlow and Keras (a few seconds), so this
module is outside the package and imports it only to run a command
(:mod:`keras_transformers.cli` does the work). ``python -m keras_transformers.cli`` is the same
command, started the slow way.

Quiet by default: TensorFlow prints start-up lines (oneDNN, CPU features, CUDA probing on a
machine without a GPU, some as ``E0000`` errors) before its own log level applies. They are
filtered out of what the import writes to stderr; everything else it writes still shows.
``--verbose`` shows everything, and full tracebacks.
"""

import argparse
import contextlib
import os
import re
import sys
import tempfile

TASKS = ("causal-lm", "classifier", "tagger", "seq2seq")
TOKENIZERS = ("char", "byte", "bpe", "wordpiece", "sentencepiece")
STRATEGIES = ("default", "one-device", "mirrored", "multi-worker")  # training.distribute.STRATEGY_NAMES

# What TensorFlow writes to stderr while it starts, on a machine like ours: not the user's concern.
_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] "  # absl INFO and WARNING lines
    r"|E\d{4} [\d:.]+ +\d+ (cuda_\w+|gpu_\w+)\.cc:\d+\] "  # CUDA probing without a GPU
    r"|To enable the following instructions: .* in other operations, rebuild TensorFlow"
    r"|.*Unable to register cu(DNN|FFT|BLAS) factory)")


def _positive(value):
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def _setting(value):
    field, equals, setting = value.partition("=")
    if not equals or not field.strip():
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE (a TransformerConfig field), got {value!r}")
    return field.strip(), setting.strip()


def build_parser():
    verbose_help = "show TensorFlow's start-up and log lines, and full tracebacks"
    # Before or after the command name; SUPPRESS keeps a subcommand from resetting the flag.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose_help)
    parser = argparse.ArgumentParser(
        prog="keras-transformers",
        description="Train, evaluate, generate with and export keras_transformers models.")
    parser.add_argument("--verbose", action="store_true", help=verbose_help)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    quickstart = commands.add_parser(
        "quickstart", parents=[common],
        help="train a small character-level GPT on tiny Shakespeare (~2 min on 2 cores) and print a sample",
        description="Train a small character-level GPT on tiny Shakespeare (~2 min on 2 cores) and "
                    "print a sample. With --save, the model carries its character tokenizer: "
                    "`keras-transformers generate model.keras \"ROMEO:\"` continues text.")
    quickstart.add_argument("--steps", type=_positive, default=2000, help="training steps (default 2000)")
    quickstart.add_argument("--steps-per-epoch", type=_positive, default=250,
                            help="steps between validation reports (default 250)")
    quickstart.add_argument("--sample-length", type=_positive, default=500,
                            help="characters to generate (default 500)")
    quickstart.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default 0.8)")
    quickstart.add_argument("--save", metavar="PATH.keras", help="save the trained model (text in, text out) there")
    quickstart.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    quickstart.add_argument("--no-xla", action="store_true", help="train without XLA compilation")

    train = commands.add_parser(
        "train", parents=[common], help="train a model on your own files (or fine-tune a checkpoint)",
        description="Train a model on your files into RUN_DIR: model.keras (text in, text out), the "
                    "tokenizer files, config.json, per-epoch checkpoints, metrics.csv, TensorBoard logs "
                    "(logs/) and curves.png. Rerunning the same command resumes after the last finished "
                    "epoch. Data: causal-lm: plain text, one example a line; classifier: TSV/CSV of "
                    "text and label (a header row is detected); tagger: CoNLL; seq2seq: a TSV/CSV of "
                    "source and target, or two line-aligned files (--data SRC TGT).")
    train.add_argument("task", choices=TASKS)
    train.add_argument("--data", required=True, nargs="+", metavar="PATH", help="the training data")
    train.add_argument("--validation", nargs="+", metavar="PATH", help="validation data, same format")
    train.add_argument("--out", required=True, metavar="RUN_DIR", help="the run directory")
    train.add_argument("--preset", metavar="NAME",
                       help="a TransformerConfig preset (tiny, bert_base, gpt2_small, llama_small, ...); "
                            "default: the task's family at a CPU-sized shape (width 128, 2 layers, 4 heads)")
    train.add_argument("--set", dest="overrides", action="append", type=_setting, default=[],
                       metavar="FIELD=VALUE", help="change a TransformerConfig field (repeatable), "
                                                   "e.g. --set num_layers=4 --set dropout=0.1")
    train.add_argument("--from-pretrained", metavar="HF_DIR",
                       help="fine-tune a Hugging Face checkpoint directory (its own tokenizer)")
    train.add_argument("--tokenizer", choices=TOKENIZERS,
                       help="tokenizer to train on the data (default: char for causal-lm, else wordpiece)")
    train.add_argument("--vocabulary-size", type=_positive, help="tokenizer vocabulary size (default 8000; "
                                                                 "char: every character of the data)")
    length = train.add_mutually_exclusive_group()
    length.add_argument("--steps", type=_positive, help="training steps in all (rounded up to whole epochs)")
    length.add_argument("--epochs", type=_positive, help="passes over the data (default 3)")
    train.add_argument("--batch-size", type=_positive, default=32, help="default 32")
    train.add_argument("--sequence-length", type=_positive, default=128,
                       help="tokens per example (seq2seq: per side); default 128")
    train.add_argument("--learning-rate", type=float,
                       help="peak AdamW learning rate (default 1e-3; 5e-5 with --from-pretrained)")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--mlflow", nargs="?", const="", default=None, metavar="URI",
                       help="log the run to MLflow (params, per-epoch metrics, the model); URI default: MLflow's "
                            "local store (./mlflow.db, artifacts in ./mlruns); needs "
                            "pip install \"keras_transformers[tracking]\"")
    train.add_argument("--mlflow-experiment", default="keras-transformers", metavar="NAME",
                       help="MLflow experiment name (default keras-transformers)")
    train.add_argument("--no-xla", action="store_true", help="train without XLA compilation")
    train.add_argument("--strategy", choices=STRATEGIES, default="default",
                       help="tf.distribute strategy: mirrored (every local GPU, or --devices) or multi-worker "
                            "(one command per host, the cluster in TF_CONFIG; --out on a filesystem all "
                            "workers see; the chief writes it). --batch-size is the global batch. "
                            "See docs/distributed.md")
    train.add_argument("--devices", type=lambda text: text.split(","), metavar="DEV,DEV",
                       help="mirrored: the devices, e.g. GPU:0,GPU:1; CPU:0,CPU:1 splits the CPU into "
                            "logical devices (to try distribution; not faster)")

    evaluate = commands.add_parser(
        "evaluate", parents=[common], help="print a JSON of a model's metrics on a file",
        description="Print a JSON of the task's metrics on PATH (the training formats): loss and "
                    "perplexity (causal-lm), loss and accuracy (classifier), entity precision/recall/F1 "
                    "(tagger), loss, perplexity and BLEU (seq2seq).")
    evaluate.add_argument("model", metavar="MODEL", help="a .keras file or a RUN_DIR")
    evaluate.add_argument("--data", required=True, nargs="+", metavar="PATH")
    evaluate.add_argument("--batch-size", type=_positive, default=32)
    evaluate.add_argument("--max-new-tokens", type=_positive,
                          help="seq2seq: longest output for BLEU (default: the sequence length of the run)")

    generate = commands.add_parser(
        "generate", parents=[common], help="continue prompts (causal-lm) or translate sources (seq2seq)",
        description="Print the continuation of each prompt (causal-lm) or the output for each source "
                    "(seq2seq), one per line. MODEL: a .keras file, a RUN_DIR, or a SavedModel version "
                    "directory (through its text signature; its generation settings were fixed at export).")
    generate.add_argument("model", metavar="MODEL")
    generate.add_argument("prompts", nargs="+", metavar="PROMPT")
    generate.add_argument("--max-new-tokens", type=_positive, help="tokens to generate (default 64)")
    generate.add_argument("--temperature", type=float, help="sampling temperature (default 0: greedy)")
    generate.add_argument("--top-k", type=_positive, help="sample among the k most likely tokens")
    generate.add_argument("--top-p", type=float, help="sample from the nucleus of this probability")
    generate.add_argument("--num-beams", type=_positive, help="beam search width (default 1)")
    generate.add_argument("--seed", type=int, help="sampling seed (default 0)")

    export = commands.add_parser(
        "export", parents=[common],
        help="export a saved model (.keras) for TF Serving or ONNX Runtime, verified against the Keras model")
    export.add_argument("format", choices=("savedmodel", "onnx"))
    export.add_argument("model", metavar="MODEL", help="a .keras file saved with model.save(), or a RUN_DIR")
    export.add_argument("output", metavar="OUT", help="savedmodel: the model directory TF Serving polls "
                                                      "(a new version goes in OUT/<version>); onnx: a new directory")
    export.add_argument("--version", dest="model_version", type=_positive,
                        help="savedmodel: the version number (default: the next one)")
    export.add_argument("--max-new-tokens", type=_positive,
                        help="generation: tokens to generate (default 32, at most half the context)")
    export.add_argument("--num-beams", type=_positive, help="generation: beam search width (default 1: greedy)")
    export.add_argument("--temperature", type=float, help="generation: sampling temperature (default 0: greedy)")
    export.add_argument("--top-k", type=_positive, help="generation: sample among the k most likely tokens")
    export.add_argument("--top-p", type=float, help="generation: sample from the nucleus of this probability")
    export.add_argument("--seed", type=int, help="generation: a fixed sampling seed (default: fresh per request)")
    export.add_argument("--xla", action="store_true", help="savedmodel: keep XLA in the graph (GPU serving)")
    export.add_argument("--cpp-check", action="store_true",
                        help="savedmodel: also run every signature through the C++ loader (needs g++)")
    export.add_argument("--opset", type=_positive, default=17, help="onnx: the ONNX opset (default 17)")
    export.add_argument("--no-verify", action="store_true", help="skip the verification against Keras")
    return parser


def _config_fields():
    """The field names of ``TransformerConfig``, read from its source without importing it
    (that would import TensorFlow); ``None`` if the source is not where it should be."""
    import ast
    import importlib.util

    try:
        spec = importlib.util.find_spec("keras_transformers")  # does not run the package
        path = os.path.join(list(spec.submodule_search_locations)[0], "models", "config.py")
        with open(path, encoding="utf-8") as file:
            tree = ast.parse(file.read())
    except (AttributeError, ImportError, OSError, SyntaxError, TypeError, IndexError):
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "TransformerConfig":
            return [item.target.id for item in node.body
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)]
    return None


def check_arguments(args):
    """The mistakes found without TensorFlow: a missing file, an unknown ``--set`` field.
    Returns the error message, or ``None``."""
    import difflib
    import importlib.util

    if args.command == "export" and args.format == "onnx":
        for module in ("tf2onnx", "onnxruntime"):
            try:
                missing = importlib.util.find_spec(module) is None
            except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
                missing = True
            if missing:
                return f'export onnx needs {module}: pip install "keras_transformers[onnx]"'
    model = args.__dict__.get("model")
    if model is not None and not model.endswith(".keras") and not os.path.isdir(model):
        return f"MODEL must be a .keras file saved with model.save(), or a run directory, got {model!r}"
    paths = {"train": [("--data", args.__dict__.get("data")), ("--validation", args.__dict__.get("validation"))],
             "evaluate": [("--data", args.__dict__.get("data")), ("MODEL", [args.__dict__.get("model")])],
             "generate": [("MODEL", [args.__dict__.get("model")])],
             "export": [("MODEL", [args.__dict__.get("model")])]}.get(args.command, [])
    for what, values in paths:
        for path in values or ():
            if path is not None and not os.path.exists(path):
                return f"{what}: no such file: {path}"
    if args.command == "train" and args.from_pretrained and not os.path.isdir(args.from_pretrained):
        return f"--from-pretrained: no such directory: {args.from_pretrained}"
    fields = _config_fields() if getattr(args, "overrides", None) else None
    for field, value in (getattr(args, "overrides", None) or ()) if fields else ():
        if field not in fields:
            close = difflib.get_close_matches(field, fields, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            return f"--set {field}={value}: TransformerConfig has no field {field!r}.{hint}"
    return None


def quiet_environment(verbose):
    """What TensorFlow and absl read before they start: errors only unless ``verbose``."""
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        # TensorFlow's C++ log: even its ERROR lines are notices here ("oneDNN supports DT_INT64
        # only on platforms with AVX-512. Falling back ..."); a real failure raises in Python.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@contextlib.contextmanager
def filtered_stderr(verbose):
    """Run the body with file descriptor 2 captured; then write back what it wrote, less
    TensorFlow's start-up noise (everything, with ``verbose``). C++ code writes to the
    descriptor, not to ``sys.stderr``, so only this catches it."""
    if verbose:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real descriptor 2 (an embedding host)
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except ValueError:
                pass
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines() if line.strip() and not _NOISE.match(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()


def start_tensorflow(verbose=False):
    """Import the library (TensorFlow, Keras) and probe the devices, quietly."""
    quiet_environment(verbose)
    with filtered_stderr(verbose):
        import keras_transformers  # noqa: F401  (registers every serializable class)
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe happens here, inside the filter
    if not verbose:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)  # "WARNING:absl:Found untraced functions"


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from importlib.metadata import version

        print(version("keras_transformers"))
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "quickstart" and args.save and not args.save.endswith(".keras"):
        print(f"keras-transformers quickstart: error: --save must name a .keras file, got {args.save!r}",
              file=sys.stderr)
        return 2
    problem = check_arguments(args)
    if problem:
        print(f"keras-transformers {args.command}: error: {problem}", file=sys.stderr)
        return 2
    start_tensorflow(args.verbose)
    from keras_transformers import cli

    return cli.run(args)


if __name__ == "__main__":
    sys.exit(main())
