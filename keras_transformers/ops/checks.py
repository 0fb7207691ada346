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


def check_ids_in_range(ids, limit, name, limit_name="vocab_size", range_name="the vocabulary",
                       allow_negative=False):
    """Refuse integer ids outside ``[0, limit)`` before a gather looks them up.

    On GPU an out-of-range gather silently returns zeros, and under XLA on any device it
    clamps (an id of 10⁹ reads row ``limit - 1``), so the check must come first, outside XLA.
    Eagerly this raises ``ValueError`` naming ``name``, the offending id and
    ``limit_name=limit``; inside a graph it adds an assertion that raises
    ``InvalidArgumentError`` with the same message (the id included) when the graph runs
    (not under XLA, which cannot assert: task models check their batches before the XLA step).
    ``allow_negative`` lets negative values through (ignored labels, e.g. -100).

    Returns ``ids``, in a graph made to depend on the assertion.
    """
    if not ids.dtype.is_integer:
        raise ValueError(f"`{name}` must be an integer tensor, got dtype {ids.dtype.name}.")
    limits = f"{range_name} [0, {limit_name}={limit})" + (" (negative values are ignored)"
                                                          if allow_negative else "")
    if tf.executing_eagerly():
        values = ids.numpy()
        if values.size and (values.max() >= limit or (values.min() < 0 and not allow_negative)):
            bad = values.max() if values.max() >= limit else values.min()
            raise ValueError(f"`{name}` holds id {bad}, outside {limits}.")
        return ids

    def assertions():
        high = tf.reduce_max(ids)  # of an empty tensor: the dtype's minimum, which passes
        low = tf.reduce_min(ids)
        ok = high < tf.cast(limit, ids.dtype)
        if not allow_negative:
            ok = tf.logical_and(ok, low >= 0)
        bad = tf.where(high >= tf.cast(limit, ids.dtype), high, low)
        return [tf.debugging.Assert(ok, [f"`{name}` holds id", bad, f"outside {limits}."])]

    return with_graph_assertions(ids, assertions)


def check_mask_values(mask, name):
    """Refuse a mask that is not boolean or 0/1 (0.5, 2, -1 and NaN are errors, not "real").

    Eagerly ``ValueError`` naming ``name`` and the first bad value; in a graph an assertion
    (outside XLA). Returns ``mask``, in a graph made to depend on it.
    """
    if mask.dtype == tf.bool:
        return mask
    if tf.executing_eagerly():
        values = mask.numpy()
        bad = values[(values != 0) & (values != 1)]
        if bad.size:
            raise ValueError(f"`{name}` must hold booleans or 0/1 (1 = real token), got {bad.flat[0]}.")
        return mask

    def assertions():
        is_bit = tf.logical_or(tf.equal(mask, 0), tf.equal(mask, 1))
        first_bad = tf.boolean_mask(tf.reshape(mask, [-1]), tf.logical_not(tf.reshape(is_bit, [-1])))[:1]
        return [tf.debugging.Assert(tf.reduce_all(is_bit), [
            f"`{name}` must hold booleans or 0/1 (1 = real token), got", first_bad])]

    return with_graph_assertions(mask, assertions)
