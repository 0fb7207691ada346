"""The deployment kit in export/: its configs parse as TF Serving's protos, and its clients'
requests, fed to the exported model as the server would, give the model's answers."""

import importlib.util
import os

import numpy as np
import tensorflow as tf
from google.protobuf import text_format

from tests.export.models import build

KIT = os.path.join(os.path.dirname(__file__), "..", "..", "export")


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(KIT, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_models_config_is_a_model_server_config():
    from tensorflow_serving.config import model_server_config_pb2

    config = text_format.Parse(open(os.path.join(KIT, "models.config")).read(),
                               model_server_config_pb2.ModelServerConfig())
    assert [c.name for c in config.model_config_list.config] == ["sentiment", "writer"]
    assert config.model_config_list.config[0].model_version_policy.latest.num_versions == 2


def test_client_requests_run_on_the_export(exported):
    model, path = exported("classifier")
    signatures = tf.saved_model.load(path).signatures
    texts = ["the film was great", "a sad plot"]
    expected = model.predict_labels(texts)["labels"]

    body = _load("client_rest").predict_body(texts)  # what the REST server decodes
    outputs = signatures[body["signature_name"]](**{k: tf.constant(v) for k, v in body["inputs"].items()})
    assert [label.decode() for label in outputs["labels"].numpy()] == expected

    request = _load("client_grpc").predict_request("sentiment", texts)  # what the gRPC server decodes
    inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    outputs = signatures[request.model_spec.signature_name](**inputs)
    assert [label.decode() for label in outputs["labels"].numpy()] == expected


def test_onnx_example_gives_the_models_logits(tmp_path):
    from keras_transformers.export import export_onnx

    model = build("tagger")
    export_onnx(model, tmp_path / "tagger_onnx")
    ids = [2, 16, 17, 18, 3]
    got = _load("onnx_runtime_example").logits(str(tmp_path / "tagger_onnx"), ids)
    want = model({"token_ids": tf.constant([ids]), "padding_mask": tf.ones([1, 5], tf.int32)})
    np.testing.assert_allclose(got, want, atol=1e-4)
