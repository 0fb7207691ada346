"""A model configured with chunked attention (issue 16) exports to SavedModel and ONNX, and both
artifacts match Keras (the exports' own verification: SavedModel replayed in a TensorFlow-only
process, ONNX in ONNX Runtime, its generate loop included). The chunked form is really inside:
``model.onnx`` (the forward pass alone) holds its tile loops as ONNX ``Loop`` nodes, where the
same model with exact attention has none."""

import collections

import keras

import keras_transformers as kt
from keras_transformers.export import export_onnx, export_savedmodel


def onnx_op_counts(graph):
    counts = collections.Counter()
    for node in graph.node:
        counts[node.op_type] += 1
        for attribute in node.attribute:
            if attribute.g is not None and attribute.g.node:
                counts.update(onnx_op_counts(attribute.g))
    return counts


def test_a_chunked_attention_model_exports_with_its_loops_and_matches(tmp_path):
    import onnx

    keras.utils.set_random_seed(0)
    model = kt.CausalLM(kt.TransformerConfig.from_preset("tiny", vocab_size=64, num_layers=1, norm_first=True,
                                                         attention_implementation="chunked"))
    model.build()
    export_savedmodel(model, str(tmp_path / "served"))  # verify=True
    directory = export_onnx(model, str(tmp_path / "onnx"))  # verify=True
    assert onnx_op_counts(onnx.load(f"{directory}/model.onnx").graph)["Loop"] >= 1
