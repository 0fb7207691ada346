"""LoRA: adapters train, base weights do not; merged == adapted; adapters save and load alone."""

import keras
import numpy as np
import pytest

from keras_transformers import CausalLM, EncoderClassifier, TransformerConfig
from keras_transformers.training.lora import (
    enable_lora,
    load_lora_weights,
    lora_variables,
    merge_lora,
    save_lora_weights,
)

RANK = 4


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    return ({"token_ids": rng.integers(1, 64, (16, 10)), "padding_mask": np.ones((16, 10), bool)},
            rng.integers(0, 2, 16))


def classifier():
    keras.utils.set_random_seed(0)
    model = EncoderClassifier(TransformerConfig.from_preset("tiny"), num_classes=2)
    model.build()
    return model


def test_only_adapters_and_head_train_and_base_weights_stay():
    model = classifier()
    added = enable_lora(model, RANK)
    # Per block: 4 attention projections of (32 → 32) and FFN up (32 → 64), down (64 → 32),
    # each adding rank·(fan_in + fan_out); 2 blocks. Head: 32·2 + 2.
    per_block = 4 * RANK * (32 + 32) + RANK * (32 + 64) + RANK * (64 + 32)
    assert added == 2 * per_block
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == 2 * per_block + 66
    frozen = {v.path: v.numpy() for v in model.weights if not v.trainable}
    x, y = inputs()
    before = model(x).numpy()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(x, y, epochs=3, verbose=0)
    for variable in model.weights:
        if variable.path in frozen:
            np.testing.assert_array_equal(variable.numpy(), frozen[variable.path], err_msg=variable.path)
    assert np.abs(model(x).numpy() - before).max() > 1e-3  # the adapters did learn
    assert all(np.abs(v.numpy()).max() > 0 for v in lora_variables(model).values())


def test_merged_model_equals_adapted_model_and_has_no_adapters(tmp_path):
    model = classifier()
    enable_lora(model, RANK, lora_alpha=8)
    for variable in lora_variables(model).values():  # B starts at zero: make the update real
        variable.assign(np.random.default_rng(1).normal(0, 0.1, variable.shape))
    x, _ = inputs()
    merged = merge_lora(model)
    assert not lora_variables(merged) and len(merged.weights) == len(classifier().weights)
    np.testing.assert_allclose(merged(x).numpy(), model(x).numpy(), atol=1e-5)
    # Saving the adapted model writes the merged kernels: the file loads as a plain model.
    model.save(tmp_path / "adapted.keras")
    loaded = keras.saving.load_model(tmp_path / "adapted.keras")
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-5)


def test_adapters_save_and_load_alone(tmp_path):
    model = classifier()
    enable_lora(model, RANK)
    for variable in lora_variables(model).values():
        variable.assign(np.random.default_rng(2).normal(0, 0.1, variable.shape))
    path = tmp_path / "adapters.safetensors"
    save_lora_weights(model, path)
    assert path.stat().st_size < 64 * 1024
    other = classifier()  # same base weights (same seed), fresh adapters
    enable_lora(other, RANK)
    load_lora_weights(other, path)
    other.classifier.set_weights(model.classifier.get_weights())
    x, _ = inputs()
    np.testing.assert_allclose(other(x).numpy(), model(x).numpy(), atol=1e-6)
    wrong_rank = classifier()
    enable_lora(wrong_rank, RANK * 2)
    with pytest.raises(ValueError, match="Adapter .* has shape"):
        load_lora_weights(wrong_rank, path)


def test_lora_on_causal_lm_keeps_the_cached_generation_equal():
    keras.utils.set_random_seed(0)
    lm = CausalLM(TransformerConfig.from_preset("tiny", norm_first=True, embedding_norm=False,
                                                activation="swiglu", num_key_value_heads=2))
    lm.build()
    enable_lora(lm, 2)
    for variable in lora_variables(lm).values():
        variable.assign(np.random.default_rng(3).normal(0, 0.2, variable.shape))
    merged = merge_lora(lm)
    prompt = [[5, 6, 7, 8]]
    np.testing.assert_array_equal(lm.generate(prompt, max_new_tokens=6)["token_ids"],
                                  merged.generate(prompt, max_new_tokens=6)["token_ids"])
