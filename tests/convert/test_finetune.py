"""Fine-tuning imported checkpoints: classifier and tagger on an imported encoder, and MLM
pretraining that continues from the checkpoint's own head."""

import pathlib

import keras
import numpy as np

from keras_transformers import EncoderClassifier, EncoderTokenClassifier
from keras_transformers.convert import from_huggingface

HERE = pathlib.Path(__file__).parent


def batch(seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 64, (32, 8))
    return {"token_ids": ids, "padding_mask": np.ones_like(ids, dtype=bool)}


def test_classifier_and_tagger_fine_tune_an_imported_encoder_and_move_its_weights():
    x = batch()
    for make, y in ((lambda e: EncoderClassifier(e, num_classes=2), (x["token_ids"][:, 0] > 34).astype(int)),
                    (lambda e: EncoderTokenClassifier(e, num_classes=3), x["token_ids"] % 3)):
        keras.utils.set_random_seed(0)
        encoder, _ = from_huggingface(HERE / "tiny_bert")
        imported = encoder.embeddings.token_embedding.embeddings.numpy().copy()
        model = make(encoder)
        model.compile(optimizer=keras.optimizers.Adam(3e-3))
        history = model.fit(x, y, epochs=10, batch_size=16, verbose=0).history["loss"]
        assert history[-1] < 0.7 * history[0]
        assert not np.allclose(encoder.embeddings.token_embedding.embeddings.numpy(), imported)


def test_masked_lm_continues_pretraining_from_the_imported_head():
    model, _ = from_huggingface(HERE / "tiny_bert", task="masked_lm")
    x = batch(1)
    labels = np.full_like(x["token_ids"], -100)
    labels[:, 3] = x["token_ids"][:, 3]
    x["token_ids"][:, 3] = 4  # [MASK]
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = model.evaluate(x, labels, verbose=0, return_dict=True)["loss"]
    model.fit(x, labels, epochs=20, batch_size=16, verbose=0)
    assert model.evaluate(x, labels, verbose=0, return_dict=True)["loss"] < 0.7 * before
