"""Preset directories: save and load our own checkpoints (config + weights + tokenizer)."""

import keras
import numpy as np
import pytest

from keras_transformers import CausalLM, EncoderClassifier, TransformerConfig
from keras_transformers.presets import load_preset, save_preset
from keras_transformers.tokenizers import wordpiece_tokenizer

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "##s"]


@pytest.mark.parametrize("make", [
    lambda: EncoderClassifier(TransformerConfig.from_preset("tiny"), num_classes=3, pooling="mean"),
    lambda: CausalLM(TransformerConfig.from_preset("tiny", norm_first=True, position_encoding="rotary",
                                                   norm_type="rms_norm", activation="swiglu")),
])
def test_preset_round_trip_gives_equal_outputs_and_tokenizer(tmp_path, make):
    keras.utils.set_random_seed(0)
    model = make()
    model.build()
    tokenizer = wordpiece_tokenizer(VOCABULARY)
    save_preset(model, tmp_path / "preset", tokenizer=tokenizer)
    loaded, loaded_tokenizer = load_preset(tmp_path / "preset")
    assert type(loaded) is type(model) and loaded.get_config()["backbone"] == model.get_config()["backbone"]
    x = {"token_ids": np.array([[2, 5, 6, 7, 3, 0]]), "padding_mask": np.array([[1, 1, 1, 1, 1, 0]])}
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    assert loaded_tokenizer.get_vocabulary() == VOCABULARY
    assert loaded_tokenizer(["the cats sat"]) == tokenizer(["the cats sat"]) == [[5, 6, 10, 7]]


def test_load_preset_names_a_directory_that_is_not_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="No preset.json"):
        load_preset(tmp_path)
