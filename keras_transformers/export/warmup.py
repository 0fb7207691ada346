"""TF Serving warmup requests: ``assets.extra/tf_serving_warmup_requests``.

TF Serving replays this TFRecord file of ``PredictionLog`` protos when it loads a version,
before the version takes traffic, so the first real request does not pay for graph setup.
The same requests drive the export's verification (:mod:`keras_transformers.export.verify`).
"""

import os

import numpy as np
import tensorflow as tf

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def write_warmup_requests(export_dir, requests, model_name="model"):
    """Write ``requests``, a list of ``(signature_name, {input name: array})``, as
    ``PredictionLog`` records to ``export_dir/assets.extra/tf_serving_warmup_requests``."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    path = os.path.join(export_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for signature_name, inputs in requests:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature_name
            for name, value in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(export_dir):
    """The requests of a warmup file, as ``[(signature_name, {input name: NumPy array})]``."""
    from tensorflow_serving.apis import prediction_log_pb2

    requests = []
    for record in tf.data.TFRecordDataset(os.path.join(export_dir, WARMUP_FILE)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        requests.append((request.model_spec.signature_name,
                         {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}))
    return requests
