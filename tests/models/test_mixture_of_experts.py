"""A Mixtral-style CausalLM (``TransformerConfig(num_experts=E, experts_per_token=k)``, issue 17):
its training loss carries the router's load-balancing loss, it trains with ``fit`` under XLA,
and it generates with the cache exactly as without, saves and loads."""

import keras
import numpy as np
import pytest

import keras_transformers as kt

CONFIG = dict(vocab_size=32, num_layers=2, dropout=0.0, attention_dropout=0.0, activation="swiglu",
              norm_type="rms_norm", norm_first=True, position_encoding="rotary", embedding_norm=False,
              use_bias=False, max_length=24, num_experts=4, experts_per_token=2, router_aux_loss_weight=0.1)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    lm = kt.CausalLM(kt.TransformerConfig.from_preset("tiny", **CONFIG))
    lm.build()
    return lm


def batch(rows=8, length=12):
    ids = np.random.default_rng(0).integers(1, 32, (rows, length + 1)).astype("int32")
    mask = np.ones((rows, length), "int32")
    mask[:2, 8:] = 0
    return {"token_ids": ids[:, :-1] * mask, "padding_mask": mask}, ids[:, 1:]


def test_the_training_loss_adds_each_blocks_load_balancing_loss(model):
    x, y = batch()
    model.compile(optimizer="adam", jit_compile=False)
    y_pred = model(x, training=True)
    auxiliary = [float(loss) for loss in model.losses]
    assert len(auxiliary) == 2 and all(a >= 0.1 * 2 - 1e-6 for a in auxiliary)  # >= weight * k
    with_aux = float(model.compute_loss(x, y, y_pred, training=True))
    model(x, training=False)  # clears the layer losses: evaluation adds none
    assert not model.losses
    without = float(model.compute_loss(x, y, y_pred, training=False))
    assert with_aux == pytest.approx(without + sum(auxiliary), abs=1e-5)


def test_fit_under_xla_lowers_the_loss_and_generation_matches_the_full_recompute(model, tmp_path):
    x, y = batch()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))  # the default: XLA on
    history = model.fit(x, y, batch_size=8, epochs=8, verbose=0).history["loss"]
    assert history[-1] < history[0]
    prompts = [[5, 6, 7], [8, 9]]
    cached = model.generate(prompts, max_new_tokens=5)["token_ids"]
    for row, prompt in enumerate(prompts):  # greedy by recomputing the whole sequence each step
        ids = list(prompt)
        for _ in range(5):
            logits = model.predict({"token_ids": np.array([ids]), "padding_mask": np.ones((1, len(ids)))},
                                   verbose=0)
            ids.append(int(logits[0, -1].argmax()))
        assert cached[row][:len(ids)].tolist() == ids
    path = str(tmp_path / "moe.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.config.num_experts == 4
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_a_bad_mixture_config_is_refused():
    with pytest.raises(ValueError, match=r"`experts_per_token` must be in \[1, num_experts=2\], got 3"):
        kt.TransformerConfig.from_preset("tiny", **{**CONFIG, "num_experts": 2, "experts_per_token": 3})
    with pytest.raises(ValueError, match="`num_experts` needs activation='swiglu'"):
        kt.TransformerConfig.from_preset("tiny", **{**CONFIG, "activation": "gelu"})
