"""BART (Lewis et al. 2020) <-> ``transformers`` ``BartForConditionalGeneration``, and the layer
rules PEGASUS shares with it.

Learned positions are numbered from 2 in both (uer's position ``offset: 2``), so the 1026-row table
copies row for row and uer's ``max_seq_length`` is the table size (``max_position_embeddings`` + 2).
The word table is shared by the encoder, the decoder and the LM head; ``final_logits_bias`` (a (1, V)
buffer) is the LM head's output bias.
"""
from __future__ import annotations

from uer.convert.bert import activation
from uer.convert.spec import ROW, ConfigKey, Family, Head, Rule, cross_attention, fused_qkv, params

ENC, DEC = "model.encoder.layers.{i}", "model.decoder.layers.{j}"


def seq2seq_config(position_offset: int) -> tuple[ConfigKey, ...]:
    """The config keys of BART-style models (BART, PEGASUS); uer's ``max_seq_length`` is the
    position table's size, ``max_position_embeddings + position_offset``."""
    return (
        ConfigKey("vocab_size", "vocab_size"),
        ConfigKey("max_position_embeddings", "max_seq_length", lambda v, _c: v + position_offset,
                  lambda v, _m: v - position_offset),
        ConfigKey("d_model", "dim"),
        ConfigKey("encoder_layers", "num_layers"),
        ConfigKey("decoder_layers", "num_decoder_layers"),
        ConfigKey("encoder_attention_heads", "num_heads"),
        ConfigKey("decoder_attention_heads", "decoder.attention.num_heads"),
        ConfigKey("encoder_ffn_dim", "ffn_dim"),
        ConfigKey("decoder_ffn_dim", "decoder.ffn.ffn_dim"),
        ConfigKey("activation_function", "encoder.ffn.activation", activation),
        ConfigKey("dropout", "dropout"),
        ConfigKey("attention_dropout", "encoder.attention.dropout"),
        ConfigKey("activation_dropout", "encoder.ffn.activation_dropout"),
        ConfigKey("init_std", "init_std"),
        ConfigKey("scale_embedding", "embedding.parts.word.scale"),
    )


SEQ2SEQ_FIXED = {"encoder_layerdrop": (0.0,), "decoder_layerdrop": (0.0,), "tie_word_embeddings": (True,),
                 "is_decoder": (False,)}


def layers() -> tuple[Rule, ...]:
    """Encoder and decoder layers as BART, PEGASUS (and mBART, Marian) name them."""
    def attention(hf: str, uer: str) -> tuple[Rule, ...]:
        return (*fused_qkv(f"{hf}.q_proj", f"{hf}.k_proj", f"{hf}.v_proj", f"{uer}.qkv"),
                *params(f"{hf}.out_proj", f"{uer}.out"))

    def block(hf: str, uer: str) -> tuple[Rule, ...]:
        return (*attention(f"{hf}.self_attn", f"{uer}.attention"),
                *params(f"{hf}.self_attn_layer_norm", f"{uer}.attention_norm"),
                *params(f"{hf}.fc1", f"{uer}.ffn.up"), *params(f"{hf}.fc2", f"{uer}.ffn.down"),
                *params(f"{hf}.final_layer_norm", f"{uer}.ffn_norm"))

    cross = f"{DEC}.encoder_attn"
    return (*block(ENC, "encoder.layers.{i}"), *block(DEC, "decoder.layers.{j}"),
            *cross_attention(f"{cross}.q_proj", f"{cross}.k_proj", f"{cross}.v_proj", f"{cross}.out_proj",
                             "decoder.layers.{j}.cross_attention"),
            *params(f"{DEC}.encoder_attn_layer_norm", "decoder.layers.{j}.cross_attention_norm"))


def embeddings() -> tuple[Rule, ...]:
    """The shared word table and each side's position table."""
    return (Rule(("model.shared.weight",), "embedding.word.weight"),
            Rule(("model.encoder.embed_positions.weight",), "embedding.position.weight"),
            Rule(("model.decoder.embed_positions.weight",), "tgt_embedding.position.weight"))


def lm_head(architecture: str) -> Head:
    """``*ForConditionalGeneration``: the LM head is the shared table, plus ``final_logits_bias``."""
    return Head(architecture, "AutoModelForSeq2SeqLM", rules=(Rule(("final_logits_bias",), "target.lm.decoder.bias", ROW),),
                tied={"lm_head.weight": "model.shared.weight", "model.encoder.embed_tokens.weight": "model.shared.weight",
                      "model.decoder.embed_tokens.weight": "model.shared.weight"})


FAMILY = Family(
    model_type="bart",
    presets=("bart_base", "bart_tiny"),
    prefix="model.",
    config=seq2seq_config(position_offset=2),
    fixed={**SEQ2SEQ_FIXED, "normalize_before": (False,), "add_final_layer_norm": (False,)},
    body=(*embeddings(), *layers(),
          *params("model.encoder.layernorm_embedding", "embedding.norm"),
          *params("model.decoder.layernorm_embedding", "tgt_embedding.norm")),
    heads=(lm_head("BartForConditionalGeneration"),),
    max_positions=lambda m: m.max_seq_length - 2,
    generation=True,
    tokenizer_class="BartTokenizerFast",
)
