"""In-graph checks: XLA detection, and the id range check eagerly, in a graph and under XLA."""

import numpy as np
import pytest
import tensorflow as tf

from keras_transformers.ops.checks import check_ids_in_range, in_xla_context


def test_in_xla_context_only_inside_jit_compiled_functions():
    seen = {}

    def probe(name):
        seen[name] = in_xla_context()
        return tf.constant(0)

    probe("eager")
    tf.function(lambda: probe("graph"))()
    tf.function(lambda: probe("xla"), jit_compile=True)()
    assert seen == {"eager": False, "graph": False, "xla": True}


def test_eager_error_names_argument_id_and_limit():
    with pytest.raises(ValueError, match=r"`segment_ids` holds id 2, outside the vocabulary \[0, type_vocab_size=2\)"):
        check_ids_in_range(tf.constant([[0, 2]]), 2, "segment_ids", "type_vocab_size")
    with pytest.raises(ValueError, match="`token_ids` holds id -1"):
        check_ids_in_range(tf.constant([[-1, 0]]), 5, "token_ids")
    with pytest.raises(ValueError, match="`token_ids` must be an integer tensor, got dtype float32"):
        check_ids_in_range(tf.constant([[1.0]]), 5, "token_ids")


def test_graph_assertion_raises_at_run_time_and_xla_builds_none():
    checked = tf.function(lambda ids: check_ids_in_range(ids, 5, "token_ids"))
    np.testing.assert_array_equal(checked(tf.constant([1, 4])), [1, 4])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"`token_ids` holds id\] \[5\] \[outside the vocabulary \[0, vocab_size=5\)"):
        checked(tf.constant([1, 5]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`token_ids` holds id\] \[-2\]"):
        checked(tf.constant([-2, 1]))
    compiled = tf.function(lambda ids: check_ids_in_range(ids, 5, "token_ids"), jit_compile=True)
    graph = compiled.get_concrete_function(tf.TensorSpec([2], tf.int32)).graph
    assert not [op for op in graph.get_operations() if op.type == "Assert"]
