"""One Prefect flow: prepare → train → evaluate → export, over the command line's own functions.

Each step is a Prefect task calling :mod:`keras_transformers.jobs` (what ``keras-transformers
train / evaluate / export`` run), so the pipeline and the command line cannot drift apart.

- **prepare** reads the data with the library's readers (a malformed file fails here, naming the
  file and line) and, without a validation file, holds out the last 10% of the examples
  (lines; sentences for CoNLL) into ``OUT/prepared/``.
- **train** trains into the run directory ``OUT/run`` (rerunning the flow resumes it).
- **evaluate** scores the trained model on the validation data.
- **export** writes a verified SavedModel into ``OUT/serving/<version>``.

Run it locally, no server needed (Prefect's ephemeral mode starts a temporary API in-process)::

    pip install "keras_transformers[pipelines]"
    python pipelines/train_flow.py causal-lm --data my_text.txt --out pipeline_run --epochs 3

or from Python: ``train_evaluate_export("classifier", "reviews.tsv", "pipeline_run")``.
"""

import argparse
import json
import os
import sys

from prefect import flow, task

HOLD_OUT = 0.1


def _split_blocks(text, task_name):
    """The file as examples: lines, or for CoNLL blank-line-separated sentences."""
    if task_name == "tagger":
        return [block for block in text.split("\n\n") if block.strip()], "\n\n"
    return [line for line in text.split("\n") if line.strip()], "\n"


@task(name="prepare")
def prepare(task_name, data, validation, directory):
    """Check the data with the library's readers; hold out a validation split if none is given.
    Returns ``{"data", "validation", "examples", "validation_examples"}``."""
    from keras_transformers import jobs

    data = [data] if isinstance(data, str) else list(data)
    if validation is None:
        if len(data) != 1:
            raise jobs.JobError("prepare: give --validation with two line-aligned seq2seq files")
        from keras_transformers.data.readers import read_text

        _, text = read_text(data[0])
        header = ""
        if task_name == "classifier":  # a detected header row stays at the top of both files
            rows = jobs.labeled_rows(data[0])
            first = text.split("\n", 1)[0]
            if rows and not first.startswith(rows[0][0]):
                header, text = first + "\n", text.split("\n", 1)[1]
        blocks, separator = _split_blocks(text, task_name)
        if len(blocks) < 2:
            raise jobs.JobError(f"prepare: {data[0]} has {len(blocks)} example(s); a validation split needs 2")
        held = max(1, int(len(blocks) * HOLD_OUT))
        os.makedirs(directory, exist_ok=True)
        name = os.path.basename(data[0]).removesuffix(".gz")
        paths = [os.path.join(directory, "train-" + name), os.path.join(directory, "validation-" + name)]
        for path, part in zip(paths, (blocks[:-held], blocks[-held:])):
            with open(path, "w", encoding="utf-8") as file:
                file.write(header + separator.join(part) + "\n")
        data, validation = [paths[0]], [paths[1]]
    else:
        validation = [validation] if isinstance(validation, str) else list(validation)
    _, count, label_names = jobs.read_examples(task_name, data)
    _, validation_count, _ = jobs.read_examples(task_name, validation, label_names)
    return {"data": data, "validation": validation, "examples": count, "validation_examples": validation_count}


@task(name="train")
def train(task_name, prepared, run_dir, options):
    from keras_transformers import jobs

    result = jobs.train(task_name, prepared["data"], run_dir, validation=prepared["validation"], verbose=2,
                        **options)
    if result["interrupted"]:
        raise RuntimeError(f"training was interrupted after {result['epochs']} epochs; rerun the flow to resume")
    return result


@task(name="evaluate")
def evaluate(model_path, validation):
    from keras_transformers import jobs

    return jobs.evaluate(model_path, validation)


@task(name="export")
def export(model_path, serving_dir, verify):
    from keras_transformers import jobs

    return jobs.export("savedmodel", model_path, serving_dir, verify=verify)


@flow(name="keras-transformers-train-evaluate-export")
def train_evaluate_export(task_name, data, out, validation=None, verify_export=True, **options):
    """prepare → train → evaluate → export into ``out`` (``prepared/``, ``run/``, ``serving/``).

    ``options`` are :func:`keras_transformers.jobs.train`'s (``epochs``, ``steps``, ``preset``,
    ``overrides``, ``tokenizer``, ``batch_size``, ``sequence_length``, ``mlflow``, ...).
    Returns ``{"prepared", "train", "metrics", "export"}``.
    """
    prepared = prepare(task_name, data, validation, os.path.join(out, "prepared"))
    trained = train(task_name, prepared, os.path.join(out, "run"), options)
    metrics = evaluate(trained["model"], prepared["validation"])
    exported = export(trained["model"], os.path.join(out, "serving"), verify_export)
    return {"prepared": prepared, "train": {k: v for k, v in trained.items() if k != "curves"},
            "metrics": metrics, "export": exported}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=("causal-lm", "classifier", "tagger", "seq2seq"))
    parser.add_argument("--data", required=True, nargs="+")
    parser.add_argument("--validation", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--preset")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--tokenizer")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--no-verify", action="store_true", help="skip the export's verification")
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.overrides)
    result = train_evaluate_export(
        args.task, args.data if len(args.data) > 1 else args.data[0], args.out, validation=args.validation,
        verify_export=not args.no_verify, epochs=args.epochs, steps=args.steps, preset=args.preset,
        overrides=overrides, tokenizer=args.tokenizer, batch_size=args.batch_size,
        sequence_length=args.sequence_length)
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
