"""Replay a SavedModel's warmup requests as a server would: TensorFlow only.

Run as a script in a fresh process (``keras_transformers.export.verify`` does, after every
export); it imports nothing of keras_transformers, and makes ``keras``, ``keras_hub`` and the
``tensorflow_text`` Python package unimportable, so the model must run from the SavedModel
alone. tensorflow-text's *op libraries* (no Python) are loaded when given, as TF Serving links
them.

Usage:
    python replay_warmup.py EXPORT_DIR OUTPUT.npz [OP_LIBRARY.so ...]

Writes each output of request ``i`` to ``OUTPUT.npz`` as ``"{i}/{output name}"`` (strings
as bytes).
"""

import os
import sys

BLOCKED = ("keras", "keras_hub", "keras_nlp", "keras_transformers", "tf_keras", "tensorflow_text")


def main(export_dir, output_path, op_libraries):
    for name in BLOCKED:
        sys.modules[name] = None  # `import keras` now fails: the model must not need it

    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    for library in op_libraries:
        tf.load_op_library(library)
    loaded = tf.saved_model.load(export_dir, tags=["serve"])
    outputs = {}
    warmup_file = os.path.join(export_dir, "assets.extra", "tf_serving_warmup_requests")
    for i, record in enumerate(tf.data.TFRecordDataset(warmup_file)):
        request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        signature = loaded.signatures[request.model_spec.signature_name]
        inputs = {name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()}
        for name, value in signature(**inputs).items():
            outputs[f"{i}/{name}"] = value.numpy()
    imported = sorted(name for name in sys.modules
                      if name.split(".")[0] in BLOCKED and sys.modules[name] is not None)
    if imported:
        raise SystemExit(f"the SavedModel needed {imported}")
    np.savez(output_path, **outputs)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
