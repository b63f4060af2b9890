"""LLaMA-family decoders <-> ``transformers`` ``LlamaForCausalLM``, ``MistralForCausalLM`` and
``Qwen2ForCausalLM``: one spec, three families that differ only by options.

The three share every tensor name (``model.layers.{i}.self_attn.q_proj`` ...): q/k/v fuse into uer's
``qkv`` rows [q; k; v] (k and v with ``num_key_value_heads`` heads each), ``gate_proj``/``up_proj``/
``down_proj`` are the gated FFN's ``gate``/``up``/``down``, the RMSNorms are the layer norms and
``model.norm`` the final one. Hugging Face checkpoints are already in rotate-half layout (Meta's
interleaved q/k rows were permuted when they were converted to ``transformers``), which is uer's
:class:`uer.layers.rotary.RotaryEmbedding`, so no permutation happens here. Qwen2 adds biases to
q/k/v (none on ``o_proj``: uer's ``out_bias: false``); Mistral's sliding window has no uer
equivalent, so a config whose window is shorter than its positions is refused. The LM head is the
model's own or tied to the word table (``tie_word_embeddings``): one :class:`Head` each.

``rope_parameters`` (transformers 5: ``rope_theta`` and the scaling in one dict; older config.json
files with ``rope_theta``/``rope_scaling`` are read the same way) maps onto the rotary part's
``base``, ``scaling`` (``llama3``) and its options: every one of those keys writes the whole dict.

The uer <-> Hugging Face names of a model come from ``engine.rules_for(family, head,
engine.num_layers(model_cfg))`` (what the PEFT export maps LoRA modules with); a fused q/k/v rule's
split needs the model's sizes: ``rule.transform.bound(model, rule.uer).to_hf(tensor)``.
"""
from __future__ import annotations

import torch

from uer.convert.bert import activation
from uer.convert.spec import ConfigKey, Family, Head, Rule, Transform

LAYER = "model.layers.{i}"
ROTARY = "encoder.attention.rotary"
SCALING_OPTIONS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
ROPE_TYPES = ("default", "llama3")


class GroupedQKV(Transform):
    """Separate q, k and v projections (weights (H·Dh, D), (Hkv·Dh, D), (Hkv·Dh, D), or biases) <->
    uer's fused ``qkv`` rows [q; k; v]. With grouped-query attention (Hkv < H) the three parts differ
    in size, so an export splits at the sizes of the attention module that owns the parameter
    (:meth:`bound`); ``sizes`` is None before that."""

    arity = 3

    def __init__(self, sizes: tuple[int, int, int] | None = None):
        self.sizes = sizes

    def to_uer(self, tensors):
        return torch.cat(tensors, dim=0)

    def to_hf(self, tensor):
        if self.sizes is None:
            raise ValueError("GroupedQKV.to_hf needs the q/k/v sizes: call bound(model, name) first")
        return [t.contiguous() for t in tensor.split(self.sizes, dim=0)]

    def bound(self, model, name):
        attention = model.get_submodule(name.rsplit(".", 2)[0])  # encoder.layers.{i}.attention
        q, kv = attention.num_heads * attention.head_dim, attention.num_kv_heads * attention.head_dim
        return GroupedQKV((q, kv, kv))


GROUPED_QKV = GroupedQKV()


def rope_parameters(_value, model_cfg) -> dict:
    """uer's rotary options -> Hugging Face's ``rope_parameters`` dict."""
    rotary = model_cfg.encoder.attention.rotary
    if rotary.scaling is None:
        return {"rope_theta": rotary.base, "rope_type": "default"}
    return {"rope_theta": rotary.base, "rope_type": rotary.scaling, **{k: rotary[k] for k in SCALING_OPTIONS}}


def rope_key(option: str, hf_name: str) -> ConfigKey:
    """The rotary option ``option`` <-> the entry ``hf_name`` of ``rope_parameters`` (absent = None)."""
    def to_uer(value, _config):
        found = (value or {}).get(hf_name)
        return None if option == "scaling" and found == "default" else found
    return ConfigKey("rope_parameters", f"{ROTARY}.{option}", to_uer, rope_parameters)


def _check(config) -> str | None:
    """What of a Llama/Mistral/Qwen2 config uer cannot model, or None."""
    rope_type = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    if rope_type not in ROPE_TYPES:
        return f"rope_type={rope_type!r} (supported: {', '.join(ROPE_TYPES)})"
    window, positions = getattr(config, "sliding_window", None), config.max_position_embeddings
    if window is not None and window < positions:
        return (f"sliding_window={window} < max_position_embeddings={positions} (uer's attention has no sliding "
                f"window; it equals Mistral's only up to {window} positions: set max_position_embeddings to it)")
    return None


CONFIG = (
    ConfigKey("vocab_size", "vocab_size"),
    ConfigKey("hidden_size", "dim"),
    ConfigKey("intermediate_size", "ffn_dim"),
    ConfigKey("num_hidden_layers", "num_layers"),
    ConfigKey("num_attention_heads", "num_heads"),
    ConfigKey("num_key_value_heads", "encoder.attention.num_kv_heads",
              lambda v, c: None if v in (None, c.num_attention_heads) else v,
              lambda v, m: m.num_heads if v is None else v),
    ConfigKey("hidden_act", "encoder.ffn.activation", activation),
    ConfigKey("max_position_embeddings", "max_seq_length"),
    ConfigKey("rms_norm_eps", "norm_eps"),
    ConfigKey("initializer_range", "init_std"),
    ConfigKey("attention_dropout", "encoder.attention.dropout"),
    ConfigKey("tie_word_embeddings", "target.lm.tie_decoder_to",
              lambda v, _c: "embedding.word.weight" if v else None, lambda v, _m: v is not None),
    rope_key("base", "rope_theta"),
    rope_key("scaling", "rope_type"),
    *(rope_key(option, option) for option in SCALING_OPTIONS),
)
HEAD_DIM = ConfigKey("head_dim", "encoder.attention.head_dim",
                     lambda v, c: None if v in (None, c.hidden_size // c.num_attention_heads) else v,
                     lambda v, m: m.dim // m.num_heads if v is None else v)


def body(qkv_bias: bool) -> tuple[Rule, ...]:
    """The base model's tensors; ``qkv_bias``: q/k/v biases (Qwen2)."""
    attn, ffn, uer = f"{LAYER}.self_attn", f"{LAYER}.mlp", "encoder.layers.{i}"
    return (
        Rule(("model.embed_tokens.weight",), "embedding.word.weight"),
        Rule((f"{LAYER}.input_layernorm.weight",), f"{uer}.attention_norm.weight"),
        *(Rule((f"{attn}.q_proj.{p}", f"{attn}.k_proj.{p}", f"{attn}.v_proj.{p}"), f"{uer}.attention.qkv.{p}",
               GROUPED_QKV) for p in (("weight", "bias") if qkv_bias else ("weight",))),
        Rule((f"{attn}.o_proj.weight",), f"{uer}.attention.out.weight"),
        Rule((f"{LAYER}.post_attention_layernorm.weight",), f"{uer}.ffn_norm.weight"),
        Rule((f"{ffn}.gate_proj.weight",), f"{uer}.ffn.gate.weight"),
        Rule((f"{ffn}.up_proj.weight",), f"{uer}.ffn.up.weight"),
        Rule((f"{ffn}.down_proj.weight",), f"{uer}.ffn.down.weight"),
        Rule(("model.norm.weight",), "encoder.final_norm.weight"),
    )


def heads(architecture: str) -> tuple[Head, Head]:
    """``architecture`` with its own LM head, then with the head tied to the word table."""
    return (Head(architecture, "AutoModelForCausalLM", overrides=("model.target.lm.tie_decoder_to=null",),
                 rules=(Rule(("lm_head.weight",), "target.lm.decoder.weight"),)),
            Head(architecture, "AutoModelForCausalLM", overrides=("model.target.lm.tie_decoder_to=embedding.word.weight",),
                 tied={"lm_head.weight": "model.embed_tokens.weight"}))


def family(model_type: str, architecture: str, presets: tuple[str, ...], *, qkv_bias: bool = False,
           config: tuple[ConfigKey, ...] = (HEAD_DIM,), fixed: dict | None = None, **options) -> Family:
    """A LLaMA-style family: the shared keys and tensors, with or without q/k/v biases."""
    bias = ("model.encoder.attention.bias=true", "model.encoder.attention.out_bias=false") if qkv_bias else \
        ("model.encoder.attention.bias=false", "model.encoder.attention.out_bias=null")
    return Family(model_type=model_type, presets=presets, prefix="model.", config=CONFIG + config,
                  fixed=fixed or {}, body=body(qkv_bias), heads=heads(architecture),
                  overrides=(*bias, "model.encoder.ffn.bias=false", "model.encoder.ffn.gated=true"),
                  ignored=(r"(^|\.)rotary_emb\.inv_freq$",), max_positions=lambda m: m.max_seq_length,
                  check=_check, generation=True, **options)


LLAMA = family("llama", "LlamaForCausalLM", ("llama2_7b", "llama3_8b", "llama_mini", "llama_tiny"),
               fixed={"attention_bias": (False,), "mlp_bias": (False,)}, tokenizer_class="LlamaTokenizerFast")
MISTRAL = family("mistral", "MistralForCausalLM", ("mistral_7b",), tokenizer_class="LlamaTokenizerFast",
                 token_values=lambda _m, _t: {"sliding_window": None})  # exported: no window (v0.2 and later)
QWEN2 = family("qwen2", "Qwen2ForCausalLM", ("qwen2_0_5b",), qkv_bias=True, config=(),
               fixed={"use_sliding_window": (False,)}, tokenizer_class="Qwen2TokenizerFast")
