"""TransformerConfig: one dataclass for every family, and the named presets."""

import dataclasses
import difflib

from keras_transformers.layers.feedforward import ACTIVATIONS
from keras_transformers.layers.normalization import NORM_TYPES
from keras_transformers.layers.rope_scaling import check_rope_scaling
from keras_transformers.ops.attention import IMPLEMENTATIONS, check_sliding_window

POSITION_ENCODINGS = ("learned", "sinusoidal", "rotary", "relative")


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Every architectural switch of the zoo. A family is a preset of this, not a class.

    Attributes:
        vocab_size: token ids lie in ``[0, vocab_size)``.
        hidden_size: model width ``d_model``.
        num_layers: blocks in the encoder (or decoder, for decoder-only models).
        num_heads: attention heads.
        intermediate_size: feed-forward hidden width ``d_ff``.
        num_key_value_heads: key/value heads (grouped-query attention); ``num_heads`` if None.
        head_dim: width of each attention head; ``hidden_size // num_heads`` if None (then
            the heads must divide the width). T5 v1.1 and Mistral-Nemo set it: heads times
            ``head_dim`` need not equal ``hidden_size``.
        num_decoder_layers: decoder blocks of a seq2seq model; ``num_layers`` if None.
        activation: ``relu`` | ``gelu`` | ``gelu_approximate`` | ``swiglu`` | ``geglu`` (T5 v1.1).
        norm_type: ``layer_norm`` | ``rms_norm``.
        norm_first: pre-norm (True) or post-norm (False) blocks.
        norm_epsilon: epsilon of every norm.
        position_encoding: ``learned`` | ``sinusoidal`` | ``rotary`` | ``relative`` (T5: no
            position embeddings; a learned bias per head and offset bucket in self-attention,
            :class:`~keras_transformers.layers.RelativePositionBias`).
        relative_attention_buckets: offset buckets of the ``relative`` bias (T5: 32).
        relative_attention_max_distance: offsets this far or farther share the last bucket (T5: 128).
        max_length: longest sequence the model accepts.
        rope_max_wavelength: RoPE base, with rotary positions.
        rope_scaling: ``None``, or RoPE scaling for long contexts, as Hugging Face's
            ``rope_scaling``: a dict with ``rope_type`` ``linear`` | ``dynamic`` | ``llama3`` |
            ``yarn`` and that type's keys (formulas: :mod:`keras_transformers.layers.rope_scaling`);
            ``original_max_position_embeddings`` defaults to ``max_length``. E.g. Llama 3.1's
            ``{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}``.
        sliding_window: ``W``: causal self-attention sees only the ``W`` most recent positions,
            itself included (Mistral, Qwen2); ``None`` for all. Decoders only (an encoder's
            bidirectional attention has no window).
        type_vocab_size: segment (token type) embeddings, BERT-style; 0 for none.
        embedding_norm: normalize the summed embeddings (BERT, BART); pre-norm models
            instead normalize the last block's output.
        scale_embeddings: multiply token embeddings by ``√hidden_size`` (Vaswani et al.).
        dropout: dropout on embeddings and sublayer outputs.
        attention_dropout: dropout on attention weights.
        use_bias: biases in attention and feed-forward projections.
        qkv_bias: biases on the query/key/value projections (Qwen2: True with
            ``use_bias=False``); ``use_bias`` when None.
        tie_embeddings: language-model heads reuse the token embedding (``h·Eᵀ``).
        rescale_tied_head: with ``tie_embeddings``, the head reads ``h·hidden_size^-0.5``
            (T5 v1.0, whose embeddings are initialized with unit variance).
        attention_scale: multiplier of the attention scores ``Q·Kᵀ``; ``1/√head_dim`` if None
            (T5: 1.0, its initialization folds the scale into the query projection).
        pad_token_id: the padding id.
        initializer_range: stddev of the normal initializer of embeddings and kernels.
        attention_implementation: ``auto`` | ``exact`` | ``chunked``: the attention core's form
            (chunked: memory-efficient tiles, O(seq·head_dim); ``auto`` picks it for long inputs).
        num_experts: ``E``: each block's feed-forward is a mixture of ``E`` SwiGLU experts
            (:class:`~keras_transformers.layers.MixtureOfExperts`, Mixtral); ``None``: dense.
        experts_per_token: ``k``, the experts each token is routed to.
        router_aux_loss_weight: weight of the router's load-balancing loss, added in training.
        remat: in training, recompute each block's activations in the backward pass instead of
            keeping them (activation memory of one block, for one more forward pass).
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    num_key_value_heads: int = None
    head_dim: int = None
    num_decoder_layers: int = None
    activation: str = "gelu"
    norm_type: str = "layer_norm"
    norm_first: bool = False
    norm_epsilon: float = 1e-12
    position_encoding: str = "learned"
    max_length: int = 512
    rope_max_wavelength: float = 10000.0
    rope_scaling: dict = None
    relative_attention_buckets: int = 32
    relative_attention_max_distance: int = 128
    sliding_window: int = None
    type_vocab_size: int = 0
    embedding_norm: bool = True
    scale_embeddings: bool = False
    dropout: float = 0.1
    attention_dropout: float = 0.1
    use_bias: bool = True
    qkv_bias: bool = None
    tie_embeddings: bool = True
    rescale_tied_head: bool = False
    attention_scale: float = None
    pad_token_id: int = 0
    initializer_range: float = 0.02
    attention_implementation: str = "auto"
    remat: bool = False
    num_experts: int = None
    experts_per_token: int = 2
    router_aux_loss_weight: float = 0.02

    def __post_init__(self):
        def require(condition, message):
            if not condition:
                raise ValueError(message)

        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                     "max_length"):
            value = getattr(self, name)
            require(isinstance(value, int) and value > 0, f"`{name}` must be a positive integer, got {value!r}.")
        for name in ("num_key_value_heads", "num_decoder_layers", "head_dim"):
            value = getattr(self, name)
            require(value is None or (isinstance(value, int) and value > 0),
                    f"`{name}` must be a positive integer or None, got {value!r}.")
        require(isinstance(self.type_vocab_size, int) and self.type_vocab_size >= 0,
                f"`type_vocab_size` must be a non-negative integer, got {self.type_vocab_size!r}.")
        require(self.head_dim is not None or self.hidden_size % self.num_heads == 0,
                f"`hidden_size` ({self.hidden_size}) must be divisible by `num_heads` ({self.num_heads}), "
                "or `head_dim` given.")
        if self.head_dim is None:  # derived; to_dict() writes it back as None
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
        require(self.num_heads % self.key_value_heads == 0,
                f"`num_heads` ({self.num_heads}) must be a multiple of `num_key_value_heads` "
                f"({self.num_key_value_heads}).")
        require(self.activation in ACTIVATIONS,
                f"`activation` must be one of {ACTIVATIONS}, got {self.activation!r}.")
        require(self.norm_type in NORM_TYPES, f"`norm_type` must be one of {NORM_TYPES}, got {self.norm_type!r}.")
        require(self.position_encoding in POSITION_ENCODINGS,
                f"`position_encoding` must be one of {POSITION_ENCODINGS}, got {self.position_encoding!r}.")
        require(self.position_encoding != "rotary" or self.head_dim % 2 == 0,
                f"Rotary positions need an even head_dim, got {self.head_dim}.")
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            require(0.0 <= value < 1.0, f"`{name}` must be in [0, 1), got {value!r}.")
        # Completed (original_max_position_embeddings) so the saved config says everything.
        object.__setattr__(self, "rope_scaling", check_rope_scaling(self.rope_scaling, self.max_length))
        require(self.rope_scaling is None or self.position_encoding == "rotary",
                f"`rope_scaling` needs position_encoding='rotary', got {self.position_encoding!r}.")
        object.__setattr__(self, "sliding_window", check_sliding_window(self.sliding_window))  # a plain int
        require(self.qkv_bias is None or isinstance(self.qkv_bias, bool),
                f"`qkv_bias` must be True, False or None, got {self.qkv_bias!r}.")
        require(self.attention_implementation in IMPLEMENTATIONS,
                f"`attention_implementation` must be one of {IMPLEMENTATIONS}, "
                f"got {self.attention_implementation!r}.")
        require(isinstance(self.remat, bool), f"`remat` must be True or False, got {self.remat!r}.")
        if self.num_experts is not None:
            require(isinstance(self.num_experts, int) and self.num_experts >= 1,
                    f"`num_experts` must be a positive integer or None, got {self.num_experts!r}.")
            require(isinstance(self.experts_per_token, int) and 1 <= self.experts_per_token <= self.num_experts,
                    f"`experts_per_token` must be in [1, num_experts={self.num_experts}], got "
                    f"{self.experts_per_token!r}.")
            require(self.activation == "swiglu",
                    f"`num_experts` needs activation='swiglu' (the experts are SwiGLU), got {self.activation!r}.")
        if self.position_encoding == "relative":
            require(isinstance(self.relative_attention_buckets, int) and self.relative_attention_buckets >= 4,
                    f"`relative_attention_buckets` must be an integer >= 4, got {self.relative_attention_buckets!r}.")
            require(isinstance(self.relative_attention_max_distance, int)
                    and self.relative_attention_max_distance > self.relative_attention_buckets // 2,
                    f"`relative_attention_max_distance` must be an integer above relative_attention_buckets/2 "
                    f"({self.relative_attention_buckets // 2}), got {self.relative_attention_max_distance!r}.")
            require(self.attention_implementation != "chunked",
                    "position_encoding='relative' adds a bias to every score, which the chunked attention "
                    "does not take: use attention_implementation='exact' or 'auto'.")
        require(self.attention_scale is None or self.attention_scale > 0,
                f"`attention_scale` must be positive or None, got {self.attention_scale!r}.")
        require(isinstance(self.rescale_tied_head, bool),
                f"`rescale_tied_head` must be True or False, got {self.rescale_tied_head!r}.")
        require(self.router_aux_loss_weight >= 0.0,
                f"`router_aux_loss_weight` must be >= 0, got {self.router_aux_loss_weight!r}.")
        require(0 <= self.pad_token_id < self.vocab_size,
                f"`pad_token_id` ({self.pad_token_id}) must lie in [0, vocab_size={self.vocab_size}).")

    @property
    def key_value_heads(self):
        return self.num_key_value_heads or self.num_heads

    @property
    def decoder_layers(self):
        return self.num_decoder_layers or self.num_layers

    def replace(self, **changes):
        """A copy with some fields changed, e.g. ``config.replace(vocab_size=65)``."""
        _check_field_names(changes)
        return TransformerConfig(**{**self.to_dict(), **changes})

    def to_dict(self):
        """The fields as a dict; ``head_dim`` is None when it is the derived
        ``hidden_size // num_heads`` (so a copy with another width derives its own)."""
        values = dataclasses.asdict(self)
        if self.hidden_size % self.num_heads == 0 and self.head_dim == self.hidden_size // self.num_heads:
            values["head_dim"] = None
        return values

    @classmethod
    def from_dict(cls, values):
        _check_field_names(values)
        return cls(**values)

    @classmethod
    def from_preset(cls, name, **changes):
        """A named preset, optionally changed: ``TransformerConfig.from_preset("llama_small", vocab_size=65)``."""
        if name not in PRESETS:
            close = difflib.get_close_matches(name, PRESETS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"Unknown preset {name!r}.{hint} Presets: {', '.join(sorted(PRESETS))}.")
        return PRESETS[name].replace(**changes)


def _check_field_names(values):
    fields = {field.name for field in dataclasses.fields(TransformerConfig)}
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"TransformerConfig has no field {key!r}.{hint}")


_BERT = TransformerConfig()  # the defaults are BERT-base

# The Llama block (RoPE, RMSNorm, SwiGLU, grouped-query attention, no biases) the Llama-family
# presets share; each sets its sizes.
_LLAMA_BLOCK = TransformerConfig(
    activation="swiglu", norm_type="rms_norm", norm_first=True, norm_epsilon=1e-5,
    position_encoding="rotary", embedding_norm=False, dropout=0.0, attention_dropout=0.0,
    use_bias=False, tie_embeddings=False)

PRESETS = {
    # Devlin et al., 2018: post-norm, GELU, learned positions, segment embeddings.
    "bert_base": _BERT.replace(type_vocab_size=2),
    # Sanh et al., 2019: BERT-base halved in depth, no segment embeddings.
    "distilbert_base": _BERT.replace(num_layers=6),
    # Liu et al., 2019: BERT-base with a byte-level BPE vocabulary (pad id 1).
    "roberta_base": _BERT.replace(vocab_size=50265, max_length=514, type_vocab_size=1,
                                  norm_epsilon=1e-5, pad_token_id=1),
    # sentence-transformers/all-MiniLM-L6-v2 (MiniLM-L6-H384): 6 layers, width 384.
    "minilm_l6": _BERT.replace(hidden_size=384, num_layers=6, intermediate_size=1536,
                               type_vocab_size=2),
    # Radford et al., 2019, 124M: pre-norm, tanh-GELU, final norm, tied head.
    "gpt2_small": _BERT.replace(vocab_size=50257, max_length=1024, activation="gelu_approximate",
                                norm_first=True, norm_epsilon=1e-5, embedding_norm=False),
    # A small Llama: RoPE, RMSNorm, SwiGLU, grouped-query attention, no biases.
    "llama_small": TransformerConfig(
        vocab_size=32000, hidden_size=512, num_layers=8, num_heads=8, num_key_value_heads=2,
        intermediate_size=1376, activation="swiglu", norm_type="rms_norm", norm_first=True,
        norm_epsilon=1e-5, position_encoding="rotary", max_length=2048, embedding_norm=False,
        dropout=0.0, attention_dropout=0.0, use_bias=False, tie_embeddings=False),
    # Vaswani et al., 2017, base: post-norm, ReLU, sinusoidal, √d embedding scale, shared vocab.
    "transformer_base": TransformerConfig(
        vocab_size=37000, hidden_size=512, num_layers=6, num_heads=8, intermediate_size=2048,
        activation="relu", norm_epsilon=1e-6, position_encoding="sinusoidal", max_length=1024,
        embedding_norm=False, scale_embeddings=True, dropout=0.1, attention_dropout=0.0),
    # Lewis et al., 2019, base: 6+6 post-norm layers, GELU, learned positions, embedding norm.
    "bart_base": _BERT.replace(vocab_size=50265, num_layers=6, max_length=1024, norm_epsilon=1e-5,
                               pad_token_id=1),
    # Llama 3.1 8B (Meta, 2024): rope_theta 500000 with llama3 RoPE scaling to 128K positions.
    "llama3_8b": _LLAMA_BLOCK.replace(
        vocab_size=128256, hidden_size=4096, num_layers=32, num_heads=32, num_key_value_heads=8,
        intermediate_size=14336, max_length=131072, rope_max_wavelength=500000.0, rope_scaling={
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}),
    # Mistral 7B v0.1 (Jiang et al., 2023): Llama with a 4096-token sliding window.
    "mistral_7b": _LLAMA_BLOCK.replace(
        vocab_size=32000, hidden_size=4096, num_layers=32, num_heads=32, num_key_value_heads=8,
        intermediate_size=14336, max_length=32768, sliding_window=4096),
    # Qwen2 0.5B (Qwen team, 2024): q/k/v biases only, rope_theta 1e6, tied embeddings.
    "qwen2_0_5b": _LLAMA_BLOCK.replace(
        vocab_size=151936, hidden_size=896, num_layers=24, num_heads=14, num_key_value_heads=2,
        intermediate_size=4864, max_length=131072, norm_epsilon=1e-6, rope_max_wavelength=1000000.0,
        qkv_bias=True, tie_embeddings=True),
    # Mixtral 8x7B (Jiang et al., 2024): Mistral's block with 8 SwiGLU experts, 2 per token, no window.
    "mixtral_8x7b": _LLAMA_BLOCK.replace(
        vocab_size=32000, hidden_size=4096, num_layers=32, num_heads=32, num_key_value_heads=8,
        intermediate_size=14336, max_length=32768, rope_max_wavelength=1000000.0, num_experts=8,
        experts_per_token=2, router_aux_loss_weight=0.02),
    # T5 v1.0 small (Raffel et al., 2020): pre-norm RMSNorm without bias, relative position bias
    # (32 buckets, max distance 128), ReLU, unscaled scores, a tied head reading h·d^-0.5.
    "t5_small": TransformerConfig(
        vocab_size=32128, hidden_size=512, num_layers=6, num_heads=8, intermediate_size=2048,
        activation="relu", norm_type="rms_norm", norm_first=True, norm_epsilon=1e-6,
        position_encoding="relative", max_length=512, embedding_norm=False, dropout=0.1,
        attention_dropout=0.1, use_bias=False, tie_embeddings=True, rescale_tied_head=True,
        attention_scale=1.0),
    # Small enough for unit tests: every family's switches still apply via ``replace``.
    "tiny": TransformerConfig(
        vocab_size=64, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
        norm_epsilon=1e-5, max_length=64, dropout=0.0, attention_dropout=0.0),
}
