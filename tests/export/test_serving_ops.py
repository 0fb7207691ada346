"""The TF Serving op check on real SavedModels: core ops pass, tf-text 2.12.1 ops pass, RoundRobinTrim fails."""

import pytest
import tensorflow as tf
import tensorflow_text
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

from keras_transformers.export import (
    TF_TEXT_VERSION,
    assert_serving_ops,
    check_serving_ops,
    core_tf_ops,
    savedmodel_ops,
    serving_op_allowlist,
    tf_text_serving_ops,
)

LATER_TF_TEXT_OPS = {"TFText>RoundRobinTrim", "TFText>RoundRobinGenerateMasks", "TFText>Utf8Binarize"}


def _save(function, input_signature, path):
    module = tf.Module()
    module.serve = tf.function(function, input_signature=input_signature)
    tf.saved_model.save(module, str(path))
    return path


def _dense_model(path):
    module = tf.Module()
    module.kernel = tf.Variable([[1.0, 2.0], [3.0, 4.0]])
    module.serve = tf.function(
        lambda x: tf.nn.softmax(tf.matmul(x, module.kernel)), input_signature=[tf.TensorSpec([None, 2], tf.float32)]
    )
    tf.saved_model.save(module, str(path))
    return path


def _round_robin_model(path):
    def trim(a, b):
        trimmed = tensorflow_text.RoundRobinTrimmer(max_seq_length=3).trim([a, b])
        return tf.concat(trimmed, axis=1).to_tensor()

    spec = tf.RaggedTensorSpec([None, None], tf.int32)
    return _save(trim, [spec, spec], path)


def test_stored_tf_text_list_is_the_2_12_1_op_set():
    ops = tf_text_serving_ops()
    assert TF_TEXT_VERSION == "2.12.1"
    assert len(ops) == 35
    assert not ops & LATER_TF_TEXT_OPS
    assert {
        "WordpieceTokenizeWithOffsets",
        "FastWordpieceTokenizeWithOffsets",
        "TFText>FastWordpieceDetokenize",
        "SentencepieceOp",
        "SentencepieceTokenizeOp",
        "TFText>FastSentencepieceTokenize",
        "NormalizeUTF8",
        "RegexSplitWithOffsets",
    } <= ops
    assert not any(op.startswith("#") or op != op.strip() for op in ops)


def test_core_ops_are_tensorflows_own_whatever_was_imported():
    # tensorflow_text is imported at the top of this file: its un-namespaced legacy ops are
    # in TensorFlow's live registry now, yet they must not count as core ops.
    assert op_def_registry.get("WordpieceTokenizeWithOffsets") is not None
    core = core_tf_ops()
    assert {"MatMul", "Softmax", "StatefulPartitionedCall", "SaveV2", "RestoreV2", "VarHandleOp"} <= core
    assert "WordpieceTokenizeWithOffsets" not in core
    assert not any(">" in op for op in core)
    assert serving_op_allowlist() == core | tf_text_serving_ops()


def test_core_only_savedmodel_passes(tmp_path):
    path = _dense_model(tmp_path / "dense")
    ops = savedmodel_ops(path)
    assert {"MatMul", "Softmax", "ReadVariableOp", "SaveV2"} <= set(ops)
    assert ops == sorted(ops)
    assert check_serving_ops(path) == []
    assert_serving_ops(path)  # does not raise


def test_round_robin_trimmer_savedmodel_is_reported(tmp_path):
    path = _round_robin_model(tmp_path / "round_robin")
    assert "TFText>RoundRobinTrim" in savedmodel_ops(path)
    assert check_serving_ops(path) == ["TFText>RoundRobinTrim"]
    with pytest.raises(ValueError, match=r"uses 1 op outside the ops of a standard TF Serving build") as error:
        assert_serving_ops(path)
    message = str(error.value)
    assert "- TFText>RoundRobinTrim: not in tensorflow-text 2.12.1 (TF Serving 2.14-2.19); TF Serving 2.20+" in message
    assert 'truncate="waterfall"' in message
    # A TF Serving build that links the op (2.20+) accepts the model.
    assert check_serving_ops(path, allowlist=serving_op_allowlist() | LATER_TF_TEXT_OPS) == []


def test_wordpiece_tokenizer_savedmodel_passes(tmp_path):
    vocab = ["[UNK]", "he", "##llo", "world"]
    table = tf.lookup.StaticVocabularyTable(
        tf.lookup.KeyValueTensorInitializer(vocab, tf.range(len(vocab), dtype=tf.int64)), num_oov_buckets=1
    )
    tokenizer = tensorflow_text.WordpieceTokenizer(table, token_out_type=tf.int64)
    module = tf.Module()
    module.table = table
    module.serve = tf.function(
        lambda words: tokenizer.tokenize(words).to_tensor(), input_signature=[tf.TensorSpec([None], tf.string)]
    )
    path = tmp_path / "wordpiece"
    tf.saved_model.save(module, str(path))
    ops = savedmodel_ops(path)
    assert "WordpieceTokenizeWithOffsets" in ops
    assert check_serving_ops(path) == []
    assert_serving_ops(path)


def test_ops_of_nested_functions_are_found(tmp_path):
    @tf.function
    def inner(x):
        return tf.math.erfinv(x)

    @tf.function
    def middle(x):
        return tf.cond(tf.reduce_sum(x) > 0, lambda: inner(x), lambda: x)

    path = _save(middle, [tf.TensorSpec([None], tf.float32)], tmp_path / "nested")
    saved_model = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    graph_def = saved_model.meta_graphs[0].graph_def
    assert "Erfinv" not in {node.op for node in graph_def.node}  # only inside library functions
    function_names = {function.signature.name for function in graph_def.library.function}
    ops = savedmodel_ops(path)
    assert {"Erfinv", "StatelessIf"} <= set(ops) or {"Erfinv", "If"} <= set(ops)
    assert not function_names & set(ops)
    assert check_serving_ops(path) == []


def test_each_offending_op_is_explained(tmp_path):
    # A hand-written SavedModel (text format): a direct call of library function `f`, whose
    # body uses a tf-text op newer than 2.12.1; a custom-namespace op; an unknown op.
    (tmp_path / "saved_model.pbtxt").write_text(
        """
        meta_graphs {
          graph_def {
            node { name: "c" op: "Const" }
            node { name: "b" op: "TFText>Utf8Binarize" }
            node { name: "a" op: "Addons>GeluX" }
            node { name: "u" op: "NoSuchOp" }
            node { name: "call" op: "f" }
            library { function { signature { name: "f" } node_def { name: "m" op: "TFText>RoundRobinGenerateMasks" } } }
          }
        }
        """
    )
    assert savedmodel_ops(tmp_path) == [
        "Addons>GeluX", "Const", "NoSuchOp", "TFText>RoundRobinGenerateMasks", "TFText>Utf8Binarize"
    ]
    missing = ["Addons>GeluX", "NoSuchOp", "TFText>RoundRobinGenerateMasks", "TFText>Utf8Binarize"]
    assert check_serving_ops(tmp_path) == missing
    with pytest.raises(ValueError) as error:
        assert_serving_ops(tmp_path)
    lines = str(error.value).splitlines()
    assert "uses 4 ops outside the ops of a standard TF Serving build" in lines[0]
    assert [line.split(":")[0] for line in lines[1:]] == [f"  - {op}" for op in missing]
    assert "custom op library of namespace 'Addons'" in lines[1]
    assert "neither a core op of TensorFlow" in lines[2]
    assert "TF Serving 2.20+ ships it" in lines[3] and "RoundRobinTrimmer.generate_mask" in lines[3]
    assert "TF Serving 2.20+ ships it" in lines[4] and "utf8_binarize" in lines[4]


def test_custom_allowlist(tmp_path):
    path = _dense_model(tmp_path / "dense")
    missing = check_serving_ops(path, allowlist={"Const"})
    assert "MatMul" in missing and "Const" not in missing
    with pytest.raises(ValueError, match=r"(?s)outside the given allowlist:\n.*  - MatMul: not in the given allowlist"):
        assert_serving_ops(path, allowlist={"Const"})


def test_missing_saved_model_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved_model.pb"):
        savedmodel_ops(tmp_path)
