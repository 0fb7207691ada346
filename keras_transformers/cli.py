"""The ``keras-transformers`` command."""

import argparse
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
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.version:
        from importlib.metadata import version

        print(version("keras_transformers"))
        return 0
    if args.command is None:
        build_parser().print_help()
        return 2
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
