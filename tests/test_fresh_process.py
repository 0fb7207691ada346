"""What a user does across processes: a model saved in one process loads in a fresh one after
``import keras_transformers`` alone (no other module of ours imported), and gives the same
outputs. In-process tests hid a registration bug that broke every saved text model."""

import json
import os
import subprocess
import sys

import keras
import numpy as np

from keras_transformers import CausalLM, EncoderClassifier, TransformerConfig
from keras_transformers.preprocessing import CausalLMPreprocessor, TextPreprocessor
from keras_transformers.tokenizers import byte_tokenizer, wordpiece_tokenizer

TEXTS = ["a fine film", "dull", "the best film of the year"]
PROMPTS = ["ab", "a longer prompt"]

LOAD_AND_PREDICT = """
import json, sys
import keras
import keras_transformers as kt

registered = sorted(k for k in keras.saving.get_custom_objects() if k.startswith("keras_transformers>"))
classifier = keras.saving.load_model(sys.argv[1])
lm = keras.saving.load_model(sys.argv[2])
texts, prompts = json.loads(sys.argv[3]), json.loads(sys.argv[4])
print(json.dumps({
    "registered": registered,
    "labels": classifier.predict_labels(texts),
    "generated": lm.generate_text(prompts, max_new_tokens=5),
    "attributes": [callable(kt.tokenizers.wordpiece_tokenizer), callable(kt.export.export_savedmodel),
                   callable(kt.data.read_lines), callable(kt.convert.from_huggingface),
                   callable(kt.preprocessing.TextPreprocessor)],
}, default=lambda array: array.tolist()))
"""


def test_saved_text_models_load_and_predict_in_a_fresh_process(tmp_path):
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "fine", "film", "dull", "the", "best"]
    classifier = EncoderClassifier(
        TransformerConfig.from_preset("tiny", vocab_size=len(vocabulary), num_layers=1), num_classes=2,
        label_names=["negative", "positive"],
        preprocessor=TextPreprocessor(wordpiece_tokenizer(vocabulary), 8, start_id=2, separator_id=3))
    lm = CausalLM(TransformerConfig.from_preset("tiny", vocab_size=256, num_layers=1, norm_first=True),
                  preprocessor=CausalLMPreprocessor(byte_tokenizer(), 16, start_id=2, end_id=3))
    classifier.save(tmp_path / "classifier.keras")
    lm.save(tmp_path / "lm.keras")
    expected_labels = classifier.predict_labels(TEXTS)
    expected_text = lm.generate_text(PROMPTS, max_new_tokens=5)

    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, str(tmp_path / "classifier.keras"), str(tmp_path / "lm.keras"),
         json.dumps(TEXTS), json.dumps(PROMPTS)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["labels"]["labels"] == expected_labels["labels"]
    np.testing.assert_allclose(loaded["labels"]["probabilities"], expected_labels["probabilities"], atol=1e-6)
    assert loaded["generated"] == expected_text
    assert loaded["attributes"] == [True] * 5
    # Every class this process registered (it imported every module the tests use) was
    # registered by the bare import in the fresh one.
    import keras_transformers.export  # noqa: F401
    import keras_transformers.training.distillation  # noqa: F401
    import keras_transformers.training.lora  # noqa: F401
    here = {k for k in keras.saving.get_custom_objects() if k.startswith("keras_transformers>")}
    assert "keras_transformers>TextPreprocessor" in here and "keras_transformers>TransformerSchedule" in here
    assert here <= set(loaded["registered"]), here - set(loaded["registered"])
