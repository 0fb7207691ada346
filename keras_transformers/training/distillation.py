"""Knowledge distillation (Hinton et al., 2015; DistilBERT, Sanh et al., 2019).

The student minimises ``w·CE(y, s) + (1 - w)·T²·KL(softmax(t/T) ‖ softmax(s/T))`` with ``t``,
``s`` the teacher's and student's logits and ``T`` the temperature: Keras'
``keras.distillation.Distiller`` with ``LogitsDistillation`` does exactly this, so we reuse it
(:func:`make_distiller`). What we add is the DistilBERT initialisation
(:func:`student_from_teacher`): a shallower copy of the teacher that takes the embeddings,
every other block and the head from it.

Example:
    >>> student = student_from_teacher(teacher)            # half the blocks: 0, 2, 4, ...
    >>> distiller = make_distiller(teacher, student, temperature=2.0, student_loss_weight=0.5)
    >>> distiller.compile(optimizer="adam")                # hard loss: sparse CE on logits
    >>> distiller.fit(x, y)                                # then use `student`
"""

import keras

from keras_transformers.models.backbone import Backbone


def make_distiller(teacher, student, temperature=2.0, student_loss_weight=0.5):
    """A ``keras.distillation.Distiller`` (teacher frozen) for logits-producing models of ours.

    Args:
        teacher, student: task models whose outputs are logits of the same shape, e.g. two
            ``EncoderClassifier`` (``(batch, classes)``) or two ``CausalLM`` (``(batch, seq, vocab)``).
        temperature: ``T`` of the soft targets (the KL term is scaled by ``T²``).
        student_loss_weight: ``w``, the weight of the hard-label loss.

    Returns:
        The distiller; ``compile(optimizer=...)`` defaults the hard loss to sparse cross-entropy
        on logits. Train it with ``fit(x, y)`` and keep ``distiller.student``.
    """
    distiller = _Distiller(teacher=teacher, student=student,
                           distillation_losses=keras.distillation.LogitsDistillation(temperature=temperature),
                           student_loss_weight=student_loss_weight)
    return distiller


class _Distiller(keras.distillation.Distiller):
    """Keras' Distiller with the loss written out: in this Keras version its combined loss let
    a student fit systematically wrong hard labels while the logged KL term stayed near 0 (our
    test caught it), so ``compute_loss`` states the formula itself, on log-probabilities."""

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        import tensorflow as tf

        if y_pred is None:
            y_pred = self(x, training=training)
        temperature = self.distillation_losses[0].temperature
        weight = self.student_loss_weight
        student = tf.cast(y_pred, tf.float32)
        teacher = tf.stop_gradient(tf.cast(self.teacher(x, training=False), tf.float32))
        soft_teacher = tf.nn.softmax(teacher / temperature)
        kl = tf.reduce_sum(soft_teacher * (tf.nn.log_softmax(teacher / temperature)
                                           - tf.nn.log_softmax(student / temperature)), axis=-1)
        soft = temperature ** 2 * tf.reduce_mean(kl)
        hard = 0.0
        if weight > 0.0 and y is not None:
            hard = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                y, student, from_logits=True))
        total = weight * hard + (1.0 - weight) * soft
        self.student_loss_tracker.update_state(hard)
        self.distillation_loss_tracker.update_state(soft)
        self.total_loss_tracker.update_state(total)
        return total


def _backbone(model):
    if isinstance(model, Backbone):
        return model
    if hasattr(model, "backbone"):
        return model.backbone
    raise ValueError(f"student_from_teacher needs a backbone or a task model with `.backbone`, got "
                     f"{type(model).__name__}.")


def student_from_teacher(teacher, layers=None):
    """A copy of ``teacher`` with fewer blocks, initialised DistilBERT-style.

    Args:
        teacher: a built backbone (``Encoder``/``Decoder``) or task model with ``.backbone``
            (``EncoderClassifier``, ``EncoderTokenClassifier``, ``MaskedLM``, ``CausalLM``).
        layers: the teacher blocks the student keeps, in order; every other block
            (``0, 2, 4, ...``) when None.

    Returns:
        A new model of the teacher's class whose config has ``num_layers = len(layers)``; its
        embeddings, kept blocks, final norm and task head are copies of the teacher's.
    """
    if not teacher.built:
        teacher.build()
    source = _backbone(teacher)
    count = source.config.num_layers
    layers = list(range(0, count, 2)) if layers is None else [int(i) for i in layers]
    if not layers or any(not 0 <= i < count for i in layers):
        raise ValueError(f"`layers` must be teacher block indices in [0, {count}), got {layers}.")
    config = teacher.get_config()
    student_config = source.config.replace(num_layers=len(layers))
    if isinstance(teacher, Backbone):
        config["config"] = student_config.to_dict()
    else:
        config["backbone"]["config"]["config"] = student_config.to_dict()
    config.pop("name", None)
    student = teacher.__class__.from_config(config)
    student.build()
    target = _backbone(student)
    target.embeddings.set_weights(source.embeddings.get_weights())
    for block, index in zip(target.blocks, layers):
        block.set_weights(source.blocks[index].get_weights())
    if target.final_norm is not None:
        target.final_norm.set_weights(source.final_norm.get_weights())
    if student is not target:  # the head: every weight outside the backbone, in order
        backbone_ids = {id(v) for v in source.weights}
        head = [v for v in teacher.weights if id(v) not in backbone_ids]
        target_ids = {id(v) for v in target.weights}
        for variable, value in zip([v for v in student.weights if id(v) not in target_ids], head):
            variable.assign(value)
    return student
