"""In-graph value checks that stay out of XLA clusters, where TensorFlow drops them anyway."""

import tensorflow as tf

try:  # TensorFlow's own test of "inside tf.function(jit_compile=True)"; private, so guarded.
    from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext as _in_xla
except ImportError:  # pragma: no cover
    _in_xla = None


def in_xla_context():
    """Whether ops built now will be compiled by XLA (inside a ``jit_compile=True`` function)."""
    if tf.executing_eagerly() or _in_xla is None:
        return False
    return bool(_in_xla(tf.compat.v1.get_default_graph()))


def with_graph_assertions(tensor, make_assertions):
    """``tensor``, made to depend on the assertion ops ``make_assertions()`` returns.

    The assertions raise ``InvalidArgumentError`` with their message when the graph runs.
    Under XLA they are not built: XLA ignores ``Assert`` (and logs a warning for each one).
    """
    if in_xla_context():
        return tensor
    with tf.control_dependencies(make_assertions()):
        return tf.identity(tensor)


def check_ids_in_range(ids, limit, name, limit_name="vocab_size", range_name="the vocabulary"):
    """Refuse integer ids outside ``[0, limit)`` before a gather looks them up.

    On GPU an out-of-range gather silently returns zeros, so the check must come first.
    Eagerly this raises ``ValueError`` naming ``name``, the id and ``limit_name=limit``;
    inside a graph it adds assertions that raise ``InvalidArgumentError`` with the same
    message when the graph runs (not under XLA, which cannot assert).

    Returns ``ids``, in a graph made to depend on the assertions.
    """
    if not ids.dtype.is_integer:
        raise ValueError(f"`{name}` must be an integer tensor, got dtype {ids.dtype.name}.")
    if tf.executing_eagerly():
        values = ids.numpy()
        if values.size and (values.max() >= limit or values.min() < 0):
            bad = values.max() if values.max() >= limit else values.min()
            raise ValueError(f"`{name}` holds id {bad}, outside {range_name} [0, {limit_name}={limit}).")
        return ids
    message = f"`{name}` holds an id outside {range_name} [0, {limit_name}={limit})."
    return with_graph_assertions(ids, lambda: [
        tf.debugging.assert_less(ids, tf.cast(limit, ids.dtype), message=message),
        tf.debugging.assert_non_negative(ids, message=message),
    ])
