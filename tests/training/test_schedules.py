"""The warmup schedule of Vaswani et al. against its formula."""

import keras
import numpy as np
import pytest

from keras_transformers.training import TransformerSchedule


def paper_formula(step, d_model, warmup):
    return d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)


@pytest.mark.parametrize("iteration", [0, 1, 99, 3999, 4000, 10000, 100000])
def test_matches_the_paper(iteration):
    schedule = TransformerSchedule(d_model=512, warmup_steps=4000)
    np.testing.assert_allclose(float(schedule(iteration)), paper_formula(iteration + 1, 512, 4000), rtol=1e-6)


def test_peaks_at_warmup_and_scales():
    schedule = TransformerSchedule(d_model=256, warmup_steps=100, scale=2.0)
    rates = [float(schedule(i)) for i in range(300)]
    assert int(np.argmax(rates)) == 99  # iteration 99 is step 100
    np.testing.assert_allclose(max(rates), 2.0 * (256 * 100) ** -0.5, rtol=1e-6)


def test_serializes_inside_an_optimizer():
    optimizer = keras.optimizers.Adam(TransformerSchedule(128, 50))
    clone = keras.optimizers.Adam.from_config(optimizer.get_config())
    assert float(clone.learning_rate) == pytest.approx(float(optimizer.learning_rate))
    assert isinstance(clone._learning_rate, TransformerSchedule)


def test_rejects_non_positive_arguments():
    with pytest.raises(ValueError, match="`d_model` and `warmup_steps` must be positive"):
        TransformerSchedule(0, 4000)
