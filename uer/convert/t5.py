"""T5 (Raffel et al. 2020) and T5 v1.1 <-> ``transformers`` ``T5ForConditionalGeneration``.

Tensors: q/k/v of each self-attention fuse into uer's ``qkv`` (no biases anywhere), the cross-
attention's k/v into ``cross_attention.kv``; the relative position bias that ``transformers`` keeps
in layer 0 of each stack (``block.0.layer.0.SelfAttention.relative_attention_bias``) is uer's
``encoder.position_bias`` / ``decoder.position_bias``, shared by the stack's layers in both.

The LM head comes in four variants, one :class:`Head` each (all named T5ForConditionalGeneration,
tried in order on import): tied to the word table with a ReLU FFN (T5 v1.0), untied with a
gated-GELU FFN (v1.1, FLAN-T5), and the two other combinations (``transformers`` 5 always ties the
head unless the file holds a different ``lm_head.weight``). Whether the head's input is scaled by
d_model^-0.5 is ``scale_decoder_outputs`` in ``transformers`` 5 (set from ``tie_word_embeddings`` at
config creation, which is what an export writes) and ``target.lm.scale_input`` in uer.
"""
from __future__ import annotations

from uer.convert.bert import activation
from uer.convert.spec import ConfigKey, Family, Head, Rule, cross_attention, fused_qkv

ENC, DEC = "encoder.block.{i}.layer", "decoder.block.{j}.layer"


def head_dim(value, config):
    """``d_kv`` -> uer ``head_dim``: None when it is d_model / num_heads (uer's default)."""
    return None if value * config.num_heads == config.d_model else value


def feed_forward_proj(_value, model_cfg) -> str:
    """uer activation + gating -> T5's ``feed_forward_proj`` (``gated-gelu`` is T5's name for gated tanh-GELU)."""
    act, gated = model_cfg.encoder.ffn.activation, model_cfg.encoder.ffn.gated
    if gated:
        return "gated-gelu" if act == "gelu_new" else f"gated-{act}"
    return act


def weight(hf: str, uer: str) -> Rule:
    """A bias-free linear map or T5 LayerNorm: only a weight."""
    return Rule((f"{hf}.weight",), f"{uer}.weight")


def attention(hf: str, uer: str) -> tuple[Rule, ...]:
    """T5 self-attention (q, k, v, o) onto uer's fused ``qkv`` and ``out``."""
    return (*fused_qkv(f"{hf}.q", f"{hf}.k", f"{hf}.v", f"{uer}.qkv", bias=False), weight(f"{hf}.o", f"{uer}.out"))


def ffn(hf: str, uer: str, gated: bool) -> tuple[Rule, ...]:
    """``DenseReluDense``: wi (or gate wi_0 and up wi_1) and wo."""
    inner = (weight(f"{hf}.wi_0", f"{uer}.gate"), weight(f"{hf}.wi_1", f"{uer}.up")) if gated else \
        (weight(f"{hf}.wi", f"{uer}.up"),)
    return (*inner, weight(f"{hf}.wo", f"{uer}.down"))


def head(tied: bool, gated: bool) -> Head:
    """The T5ForConditionalGeneration variant with a tied or own LM head and a dense or gated FFN."""
    embeds = {"encoder.embed_tokens.weight": "shared.weight", "decoder.embed_tokens.weight": "shared.weight"}
    return Head(
        "T5ForConditionalGeneration", "AutoModelForSeq2SeqLM",
        overrides=(f"model.target.lm.tie_decoder_to={'embedding.word.weight' if tied else 'null'}",
                   f"model.encoder.ffn.gated={str(gated).lower()}"),
        rules=(*ffn(f"{ENC}.1.DenseReluDense", "encoder.layers.{i}.ffn", gated),
               *ffn(f"{DEC}.2.DenseReluDense", "decoder.layers.{j}.ffn", gated),
               *(() if tied else (weight("lm_head", "target.lm.decoder"),))),
        tied={**embeds, "lm_head.weight": "shared.weight"} if tied else embeds)


FAMILY = Family(
    model_type="t5",
    presets=("t5_small", "t5_base", "t5_v1_1_small", "t5_tiny"),
    prefix="",
    config=(
        ConfigKey("vocab_size", "vocab_size"),
        ConfigKey("d_model", "dim"),
        ConfigKey("d_kv", "encoder.attention.head_dim", head_dim, lambda v, m: m.dim // m.num_heads if v is None else v),
        ConfigKey("d_ff", "ffn_dim"),
        ConfigKey("num_layers", "num_layers"),
        ConfigKey("num_decoder_layers", "num_decoder_layers"),
        ConfigKey("num_heads", "num_heads"),
        ConfigKey("relative_attention_num_buckets", "encoder.relative_position_buckets"),
        ConfigKey("relative_attention_max_distance", "encoder.relative_position_max_distance"),
        ConfigKey("dropout_rate", "dropout"),
        ConfigKey("layer_norm_epsilon", "norm_eps"),
        ConfigKey("feed_forward_proj", "encoder.ffn.activation", lambda _v, c: activation(c.dense_act_fn, c),
                  feed_forward_proj),
        ConfigKey("tie_word_embeddings", "target.lm.scale_input",
                  lambda _v, c: bool(getattr(c, "scale_decoder_outputs", True))),
    ),
    fixed={"is_decoder": (False,), "is_encoder_decoder": (True,)},
    body=(
        Rule(("shared.weight",), "embedding.word.weight"),
        weight("encoder.block.0.layer.0.SelfAttention.relative_attention_bias", "encoder.position_bias"),
        *attention(f"{ENC}.0.SelfAttention", "encoder.layers.{i}.attention"),
        weight(f"{ENC}.0.layer_norm", "encoder.layers.{i}.attention_norm"),
        weight(f"{ENC}.1.layer_norm", "encoder.layers.{i}.ffn_norm"),
        weight("encoder.final_layer_norm", "encoder.final_norm"),
        weight("decoder.block.0.layer.0.SelfAttention.relative_attention_bias", "decoder.position_bias"),
        *attention(f"{DEC}.0.SelfAttention", "decoder.layers.{j}.attention"),
        weight(f"{DEC}.0.layer_norm", "decoder.layers.{j}.attention_norm"),
        *cross_attention(f"{DEC}.1.EncDecAttention.q", f"{DEC}.1.EncDecAttention.k", f"{DEC}.1.EncDecAttention.v",
                         f"{DEC}.1.EncDecAttention.o", "decoder.layers.{j}.cross_attention", bias=False),
        weight(f"{DEC}.1.layer_norm", "decoder.layers.{j}.cross_attention_norm"),
        weight(f"{DEC}.2.layer_norm", "decoder.layers.{j}.ffn_norm"),
        weight("decoder.final_layer_norm", "decoder.final_norm"),
    ),
    heads=(head(tied=True, gated=False), head(tied=False, gated=True), head(tied=True, gated=True),
           head(tied=False, gated=False)),
    generation=True,
    tokenizer_class="T5TokenizerFast",
)
