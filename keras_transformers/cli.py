"""The ``keras-transformers`` command: quickstart, train, evaluate, generate, export.

Thin over :mod:`keras_transformers.jobs` (the same functions the Prefect pipeline calls). The
parser lives in the top-level module ``keras_transformers_cli`` (standard library only, so
``--help`` does not wait for TensorFlow); the installed console script starts there.
``python -m keras_transformers.cli ...`` runs the same command.

Bad arguments and bad or missing files end with one line on stderr and exit status 2
(``--verbose`` adds the traceback); Ctrl-C during training ends with status 130 after keeping
what was trained.
"""

import json
import sys
import traceback

from keras_transformers_cli import build_parser  # noqa: F401  (re-exported: the one parser)
from keras_transformers_cli import main as _main


def main(argv=None):
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the command; returns the exit status."""
    return _main(argv)


def _one_line(error):
    from keras_transformers.jobs import one_line

    return one_line(error)


def _expected_errors():
    import tensorflow as tf

    from keras_transformers.jobs import JobError

    return (JobError, ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
            PermissionError, tf.errors.InvalidArgumentError, tf.errors.NotFoundError)


def run(args):
    """Run a parsed command (TensorFlow already imported)."""
    try:
        return _COMMANDS[args.command](args)
    except _expected_errors() as error:
        if args.verbose:
            traceback.print_exc()
        print(f"keras-transformers {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2


def _quickstart(args):
    from keras_transformers import quickstart

    validation_loss = quickstart.run(
        steps=args.steps, steps_per_epoch=min(args.steps_per_epoch, args.steps),
        sample_length=args.sample_length, temperature=args.temperature, save_path=args.save,
        seed=args.seed, jit_compile=not args.no_xla)
    return 130 if validation_loss is None else 0  # 130: the shell's code for Ctrl-C


def _train(args):
    from keras_transformers import jobs

    result = jobs.train(
        args.task, args.data, args.out, validation=args.validation, preset=args.preset,
        overrides=dict(args.overrides), from_pretrained=args.from_pretrained, tokenizer=args.tokenizer,
        vocabulary_size=args.vocabulary_size, steps=args.steps, epochs=args.epochs,
        batch_size=args.batch_size, sequence_length=args.sequence_length,
        learning_rate=args.learning_rate, seed=args.seed, mlflow=args.mlflow,
        mlflow_experiment=args.mlflow_experiment, jit_compile=not args.no_xla, strategy=args.strategy,
        devices=args.devices)
    return 130 if result["interrupted"] else 0


def _evaluate(args):
    from keras_transformers import jobs

    metrics = jobs.evaluate(args.model, args.data, batch_size=args.batch_size,
                            max_new_tokens=args.max_new_tokens)
    print(json.dumps(metrics, indent=2))
    return 0


def _generate(args):
    from keras_transformers import jobs

    outputs = jobs.generate(args.model, args.prompts, max_new_tokens=args.max_new_tokens,
                            temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                            num_beams=args.num_beams, seed=args.seed)
    for prompt, output in zip(args.prompts, outputs):
        print(output if len(args.prompts) == 1 else f"{prompt}\t{output}")
    return 0


def _export(args):
    from keras_transformers import jobs

    generation = {key: getattr(args, key) for key in ("max_new_tokens", "num_beams", "temperature", "top_k",
                                                       "top_p", "seed") if getattr(args, key) is not None}
    path = jobs.export(args.format, args.model, args.output, version=args.model_version,
                       generation=generation, xla=args.xla, verify=not args.no_verify, opset=args.opset)
    if args.format == "onnx":
        import os

        print(f"wrote {path}: {', '.join(sorted(os.listdir(path)))}")
        return 0
    verified = "" if args.no_verify else ", verified in a TensorFlow-only process"
    print(f"wrote {path}{verified}")
    if args.cpp_check:
        from keras_transformers.export.cpp import verify_with_cpp

        print(f"C++ LoadSavedModel + Session::Run matched Keras on "
              f"{verify_with_cpp(jobs.load_model(args.model), path)} requests")
    return 0


_COMMANDS = {"quickstart": _quickstart, "train": _train, "evaluate": _evaluate, "generate": _generate,
             "export": _export}


if __name__ == "__main__":
    sys.exit(main())
