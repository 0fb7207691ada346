"""TransformerConfig: presets, validation with errors naming the field, dict round trip."""

import dataclasses

import pytest

from keras_transformers import PRESETS, TransformerConfig


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_constructs_and_round_trips_through_a_dict(name):
    config = TransformerConfig.from_preset(name)
    assert isinstance(config, TransformerConfig)
    assert config == PRESETS[name]
    assert config.hidden_size % config.num_heads == 0
    assert TransformerConfig.from_dict(config.to_dict()) == config


PRESET_FACTS = {
    "bert_base": dict(num_layers=12, hidden_size=768, num_heads=12, intermediate_size=3072,
                      vocab_size=30522, type_vocab_size=2, norm_first=False, activation="gelu",
                      position_encoding="learned", max_length=512),
    "distilbert_base": dict(num_layers=6, hidden_size=768, vocab_size=30522),
    "roberta_base": dict(pad_token_id=1, vocab_size=50265, hidden_size=768, num_layers=12),
    "minilm_l6": dict(hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536),
    "gpt2_small": dict(norm_first=True, vocab_size=50257, activation="gelu_approximate",
                       max_length=1024, hidden_size=768, num_layers=12, embedding_norm=False,
                       tie_embeddings=True),
    "llama_small": dict(position_encoding="rotary", norm_type="rms_norm", activation="swiglu",
                        use_bias=False, norm_first=True),
    "transformer_base": dict(activation="relu", position_encoding="sinusoidal", hidden_size=512,
                             intermediate_size=2048, num_heads=8, num_layers=6,
                             scale_embeddings=True),
    "bart_base": dict(num_layers=6, decoder_layers=6, hidden_size=768),
}


@pytest.mark.parametrize("name,facts", sorted(PRESET_FACTS.items()))
def test_preset_has_its_papers_architecture(name, facts):
    config = TransformerConfig.from_preset(name)
    assert {key: getattr(config, key) for key in facts} == facts


def test_llama_small_uses_grouped_query_attention():
    config = TransformerConfig.from_preset("llama_small")
    assert config.num_key_value_heads is not None
    assert config.key_value_heads < config.num_heads
    assert config.num_heads % config.key_value_heads == 0


def test_from_preset_applies_changes_without_touching_the_preset():
    config = TransformerConfig.from_preset("llama_small", vocab_size=65, num_layers=1)
    assert (config.vocab_size, config.num_layers) == (65, 1)
    assert (PRESETS["llama_small"].vocab_size, PRESETS["llama_small"].num_layers) == (32000, 8)
    assert config.position_encoding == "rotary"


def test_config_is_immutable_and_replace_returns_a_copy():
    config = TransformerConfig.from_preset("tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.hidden_size = 64
    wider = config.replace(hidden_size=64)
    assert (config.hidden_size, wider.hidden_size) == (32, 64)


def test_derived_sizes():
    config = TransformerConfig.from_preset("tiny", num_key_value_heads=2, num_decoder_layers=3)
    assert (config.head_dim, config.key_value_heads, config.decoder_layers) == (8, 2, 3)
    plain = TransformerConfig.from_preset("tiny")
    assert (plain.key_value_heads, plain.decoder_layers) == (plain.num_heads, plain.num_layers)


@pytest.mark.parametrize("changes,message", [
    (dict(hidden_size=30), r"`hidden_size` \(30\) must be divisible by `num_heads` \(4\)"),
    (dict(activation="tanh"), r"`activation` must be one of .*'swiglu'.*got 'tanh'"),
    (dict(norm_type="batch_norm"), r"`norm_type` must be one of .*got 'batch_norm'"),
    (dict(position_encoding="alibi"), r"`position_encoding` must be one of .*got 'alibi'"),
    (dict(num_key_value_heads=3), r"`num_heads` \(4\) must be a multiple of `num_key_value_heads` \(3\)"),
    (dict(num_key_value_heads=-2), r"`num_key_value_heads` must be a positive integer or None, got -2"),
    (dict(num_decoder_layers=-1), r"`num_decoder_layers` must be a positive integer or None, got -1"),
    (dict(type_vocab_size=-1), r"`type_vocab_size` must be a non-negative integer, got -1"),
    (dict(hidden_size=36, num_heads=12, position_encoding="rotary"),
     r"Rotary positions need an even head_dim, got 3"),
    (dict(num_layers=0), r"`num_layers` must be a positive integer, got 0"),
    (dict(vocab_size=-5), r"`vocab_size` must be a positive integer, got -5"),
    (dict(max_length=2.5), r"`max_length` must be a positive integer, got 2.5"),
    (dict(dropout=1.0), r"`dropout` must be in \[0, 1\), got 1.0"),
    (dict(attention_dropout=-0.1), r"`attention_dropout` must be in \[0, 1\), got -0.1"),
    (dict(pad_token_id=64), r"`pad_token_id` \(64\) must lie in \[0, vocab_size=64\)"),
])
def test_bad_value_raises_naming_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        TransformerConfig.from_preset("tiny", **changes)


def test_unknown_preset_suggests_the_closest_name():
    with pytest.raises(ValueError, match=r"Unknown preset 'bert_bsae'\. Did you mean 'bert_base'\?"):
        TransformerConfig.from_preset("bert_bsae")


def test_unknown_preset_without_a_close_name_lists_the_presets():
    with pytest.raises(ValueError, match=r"Unknown preset 'xyz'\. Presets: .*gpt2_small.*tiny"):
        TransformerConfig.from_preset("xyz")


def test_unknown_field_in_replace_suggests_the_right_one():
    config = TransformerConfig.from_preset("tiny")
    with pytest.raises(ValueError, match=r"no field 'hiden_size'\. Did you mean 'hidden_size'\?"):
        config.replace(hiden_size=64)


@pytest.mark.parametrize("build", [
    lambda: TransformerConfig.from_dict({**TransformerConfig().to_dict(), "num_layer": 2}),
    lambda: TransformerConfig.from_preset("tiny", num_layer=2),
])
def test_unknown_field_in_from_dict_and_from_preset_is_refused(build):
    with pytest.raises(ValueError, match=r"no field 'num_layer'\. Did you mean 'num_layers'\?"):
        build()


def test_to_dict_holds_every_field_and_from_dict_restores_a_changed_config():
    config = TransformerConfig.from_preset("tiny", norm_first=True, num_key_value_heads=2,
                                           rope_max_wavelength=500.0, position_encoding="rotary")
    values = config.to_dict()
    assert set(values) == {field.name for field in dataclasses.fields(TransformerConfig)}
    assert values["num_key_value_heads"] == 2 and values["rope_max_wavelength"] == 500.0
    assert TransformerConfig.from_dict(values) == config
