"""A workaround of Keras 3 under ``MultiWorkerMirroredStrategy`` (tensorflow#72388, keras#20585)."""


def install_multi_worker_fix():
    """Work around tensorflow#72388 / keras#20585 (Keras 3 ``fit`` fails at once under
    ``MultiWorkerMirroredStrategy``: "Invalid reduction dimension 0 for input with 0
    dimensions"). Keras' step reduces the logs of its step with
    ``strategy.reduce("MEAN", value, axis=0)`` in multi-worker mode; the logs are scalars,
    which have no axis 0. This replaces, in Keras' TensorFlow trainer, the reduction of that
    one case (multi-worker, ``"auto"``/``"mean"``) by the mean over the replicas of every log
    (``axis=None`` for scalars), as MirroredStrategy's path does; everything else goes to
    Keras' own function. Idempotent; task models call it when they build their step
    functions under ``MultiWorkerMirroredStrategy``, and so does
    :func:`keras_transformers.training.distribute.make_strategy`.
    """
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica
    if getattr(original, "_keras_transformers_fix", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            def mean(value):
                rank = getattr(getattr(value, "shape", None), "rank", None)
                return strategy.reduce("MEAN", value, axis=None if not rank else 0)
            return tree.map_structure(mean, values)
        return original(values, strategy, reduction)

    reduce_per_replica._keras_transformers_fix = True
    trainer.reduce_per_replica = reduce_per_replica
