"""The ``keras-transformers`` command."""

import argparse
import os
import sys


def _positive(value):
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def build_parser():
    parser = argparse.ArgumentParser(prog="keras-transformers", description=__doc__)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command")
    quickstart = commands.add_parser(
        "quickstart", help="train a small character-level GPT on tiny Shakespeare (~2 min on 2 cores) "
                           "and print a sample")
    quickstart.add_argument("--steps", type=_positive, default=2000, help="training steps (default 2000)")
    quickstart.add_argument("--steps-per-epoch", type=_positive, default=250,
                            help="steps between validation reports (default 250)")
    quickstart.add_argument("--sample-length", type=_positive, default=500,
                            help="characters to generate (default 500)")
    quickstart.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default 0.8)")
    quickstart.add_argument("--save", metavar="PATH.keras", help="save the trained model there")
    quickstart.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    quickstart.add_argument("--no-xla", action="store_true", help="train without XLA compilation")

    export = commands.add_parser("export", help="export a saved model (.keras) for TF Serving or ONNX Runtime, "
                                                "verified against the Keras model")
    export.add_argument("format", choices=("savedmodel", "onnx"))
    export.add_argument("model", metavar="MODEL.keras", help="a model saved with model.save()")
    export.add_argument("output", metavar="OUT", help="savedmodel: the model directory TF Serving polls "
                                                      "(a new version goes in OUT/<version>); onnx: a new directory")
    export.add_argument("--version", dest="model_version", type=_positive,
                        help="savedmodel: the version number (default: the next one)")
    export.add_argument("--max-new-tokens", type=_positive, help="generation: tokens to generate (default 32)")
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


def _export(args):
    import keras

    from keras_transformers import export

    if not args.model.endswith(".keras"):
        print(f"MODEL must be a .keras file saved with model.save(), got {args.model!r}", file=sys.stderr)
        return 2
    model = keras.saving.load_model(args.model)
    if args.format == "onnx":
        path = export.export_onnx(model, args.output, opset=args.opset, verify=not args.no_verify)
        print(f"wrote {path}: {', '.join(sorted(os.listdir(path)))}")
        return 0
    generation = {key: getattr(args, key) for key in ("max_new_tokens", "num_beams", "temperature", "top_k",
                                                       "top_p", "seed") if getattr(args, key) is not None}
    path = export.export_savedmodel(model, args.output, args.model_version, generation=generation or None,
                                    jit_compile=args.xla, verify=not args.no_verify)
    verified = "" if args.no_verify else ", verified in a TensorFlow-only process"
    print(f"wrote {path}{verified}")
    if args.cpp_check:
        from keras_transformers.export.cpp import verify_with_cpp

        print(f"C++ LoadSavedModel + Session::Run matched Keras on {verify_with_cpp(model, path)} requests")
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.version:
        from importlib.metadata import version

        print(version("keras_transformers"))
        return 0
    if args.command is None:
        build_parser().print_help()
        return 2
    if args.command == "export":
        return _export(args)
    if args.save and not args.save.endswith(".keras"):
        print(f"--save must name a .keras file, got {args.save!r}", file=sys.stderr)
        return 2
    from keras_transformers import quickstart

    validation_loss = quickstart.run(
        steps=args.steps, steps_per_epoch=min(args.steps_per_epoch, args.steps),
        sample_length=args.sample_length, temperature=args.temperature, save_path=args.save,
        seed=args.seed, jit_compile=not args.no_xla)
    return 130 if validation_loss is None else 0  # 130: the shell's code for Ctrl-C


if __name__ == "__main__":
    sys.exit(main())
