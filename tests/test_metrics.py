"""Entity F1, BLEU and perplexity against hand-computed values."""

import math

import numpy as np
import pytest

from keras_transformers import CausalLM
from keras_transformers.metrics import Perplexity, corpus_bleu, entity_scores, perplexity
from tests.models.helpers import tiny_config, token_inputs


def test_entity_scores_count_exact_typed_spans_only():
    truth = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "B-ORG"], ["B-MISC", "O"]]
    predicted = [["B-PER", "I-PER", "O", "B-LOC", "O", "O", "B-MISC"], ["B-MISC", "O"]]
    # True: PER[0:2], LOC[3:5], ORG[6], MISC; predicted: PER[0:2], LOC[3] (wrong span),
    # MISC[6] (wrong type), MISC. Correct: PER and the second sentence's MISC.
    scores = entity_scores(truth, predicted)
    assert scores["precision"] == pytest.approx(2 / 4)
    assert scores["recall"] == pytest.approx(2 / 4)
    assert scores["f1"] == pytest.approx(0.5)
    assert scores["per_type"]["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert scores["per_type"]["LOC"]["recall"] == 0.0 and scores["per_type"]["MISC"]["precision"] == 0.5


def test_iob1_and_iob2_give_the_same_entities():
    iob1 = [["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC"]]
    iob2 = [["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]]
    assert entity_scores(iob1, iob2)["f1"] == 1.0
    assert entity_scores(iob2, [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-LOC"]])["f1"] == pytest.approx(
        2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))  # 1 of 2 predicted, 1 of 3 true


@pytest.mark.parametrize("truth, predicted, error", [
    ([["O"]], [["O"], ["O"]], "`true_tags` has 1 sentences but `predicted_tags` has 2"),
    ([["O", "B-PER"]], [["O"]], "Sentence 0 has 2 true tags but 1 predicted tags"),
    ([], [], "`true_tags` is empty"),
])
def test_entity_scores_errors(truth, predicted, error):
    with pytest.raises(ValueError, match=error):
        entity_scores(truth, predicted)


def test_corpus_bleu_equals_the_formula():
    hypotheses = ["a b c d e", "x y z w"]
    references = ["a b c d f", "x y z w"]
    # Clipped n-gram precisions over the corpus: 8/9, 6/7, 4/5, 2/3; equal lengths, so no
    # brevity penalty: BLEU = exp(mean(log p_n)).
    expected = 100 * math.exp(np.mean(np.log([8 / 9, 6 / 7, 4 / 5, 2 / 3])))
    result = corpus_bleu(hypotheses, references, tokenize="none")
    assert result["bleu"] == pytest.approx(expected, rel=1e-9)
    assert "tok:none" in result["signature"]


def test_corpus_bleu_brevity_penalty_and_lowercase():
    short = corpus_bleu(["a b c d"], ["a b c d e f"], tokenize="none")["bleu"]
    assert short == pytest.approx(100 * math.exp(1 - 6 / 4))  # all n-grams match; BP = e^(1-r/c)
    assert corpus_bleu(["The Cat Sat On Mats"], ["the cat sat on mats"], lowercase=True)["bleu"] == pytest.approx(100)
    assert corpus_bleu(["The Cat Sat On Mats"], ["the cat sat on mats"])["bleu"] < 100


def test_corpus_bleu_errors():
    with pytest.raises(ValueError, match="`hypotheses` has 1 sentences but `references` has 2"):
        corpus_bleu(["a"], ["a", "b"])


def test_perplexity_of_a_loss():
    assert perplexity(math.log(5.0)) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="finite non-negative loss"):
        perplexity(float("nan"))


def test_perplexity_metric_is_exp_of_the_padding_aware_loss():
    lm = CausalLM(tiny_config("gpt2_like"))
    lm.compile(optimizer="adam", metrics=[Perplexity(from_logits=True, name="perplexity")])
    inputs = token_inputs(batch=4, length=8, padding=3)
    labels = np.roll(inputs["token_ids"], -1, axis=1)
    results = lm.evaluate(inputs, labels, verbose=0, return_dict=True)
    assert results["perplexity"] == pytest.approx(math.exp(results["loss"]), rel=1e-4)
