"""Ask a TF Serving gRPC endpoint (port 8500) for a model's text-in answer.

    python client_grpc.py localhost:8500 writer "Once upon a time"

Needs ``tensorflow-serving-api`` (a dependency of keras_transformers) and ``grpcio``.
"""

import sys

import numpy as np


def predict_request(model, texts, signature_name="serving_default"):
    """A ``PredictRequest`` for raw texts."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature_name
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(np.array(texts, dtype=object)))
    return request


def main(server, model, texts):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server))
    response = stub.Predict(predict_request(model, texts), timeout=60)
    for name, proto in response.outputs.items():
        print(name, tf.make_ndarray(proto))


if __name__ == "__main__":
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
