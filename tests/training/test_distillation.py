"""Distillation: soft targets of a good teacher beat hard labels alone; DistilBERT initialisation."""

import keras
import numpy as np

from keras_transformers import CausalLM, EncoderClassifier, TransformerConfig
from keras_transformers.training.distillation import make_distiller, student_from_teacher

CONFIG = TransformerConfig.from_preset("tiny")


def task(count, seed, systematic_noise=False):
    """Label = first token >= 32. With ``systematic_noise``, labels of rows whose second token
    is < 24 are flipped: a learnable wrong rule that a clean teacher does not share."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 64, (count, 8))
    labels = (ids[:, 0] >= 32).astype(np.int32)
    if systematic_noise:
        labels = np.where(ids[:, 1] < 24, 1 - labels, labels)
    return {"token_ids": ids, "padding_mask": np.ones_like(ids, dtype=bool)}, labels


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, batch_size=256, verbose=0), -1) == y))


def test_distilled_student_beats_the_same_student_trained_without_teacher():
    keras.utils.set_random_seed(0)
    teacher = EncoderClassifier(CONFIG, num_classes=2, dropout=0.0)
    teacher.compile(optimizer=keras.optimizers.Adam(3e-3))
    teacher.fit(*task(2048, seed=1), batch_size=64, epochs=6, verbose=0)
    x_test, y_test = task(512, seed=2)
    assert accuracy(teacher, x_test, y_test) > 0.95

    x, y = task(1024, seed=3, systematic_noise=True)  # the student's labels carry a wrong rule

    def student():
        keras.utils.set_random_seed(4)
        return EncoderClassifier(CONFIG.replace(num_layers=1), num_classes=2, dropout=0.0)

    alone = student()
    alone.compile(optimizer=keras.optimizers.Adam(3e-3))
    alone.fit(x, y, batch_size=64, epochs=16, verbose=0)

    distilled = student()
    distiller = make_distiller(teacher, distilled, temperature=2.0, student_loss_weight=0.1)
    distiller.compile(optimizer=keras.optimizers.Adam(3e-3))
    distiller.fit(x, y, batch_size=64, epochs=16, verbose=0)

    alone_accuracy, distilled_accuracy = accuracy(alone, x_test, y_test), accuracy(distilled, x_test, y_test)
    assert distilled_accuracy > alone_accuracy + 0.1, (distilled_accuracy, alone_accuracy)
    assert distilled_accuracy > 0.9


def test_student_from_teacher_takes_every_other_block_embeddings_and_head():
    keras.utils.set_random_seed(0)
    teacher = EncoderClassifier(CONFIG.replace(num_layers=4), num_classes=3)
    teacher.build()
    student = student_from_teacher(teacher)
    assert isinstance(student, EncoderClassifier) and student.backbone.config.num_layers == 2
    for kept, index in zip(student.backbone.blocks, (0, 2)):
        for a, b in zip(kept.get_weights(), teacher.backbone.blocks[index].get_weights()):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(student.classifier.get_weights()[0], teacher.classifier.get_weights()[0])
    np.testing.assert_array_equal(student.backbone.embeddings.get_weights()[0],
                                  teacher.backbone.embeddings.get_weights()[0])
    lm = CausalLM(CONFIG.replace(num_layers=3, norm_first=True, embedding_norm=False))
    small = student_from_teacher(lm, layers=[2])
    np.testing.assert_array_equal(small.backbone.final_norm.get_weights()[0], lm.backbone.final_norm.get_weights()[0])
    for a, b in zip(small.backbone.blocks[0].get_weights(), lm.backbone.blocks[2].get_weights()):
        np.testing.assert_array_equal(a, b)
