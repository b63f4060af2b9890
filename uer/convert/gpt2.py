"""GPT-2 (Radford et al. 2019) <-> ``transformers`` ``GPT2LMHeadModel``.

``transformers`` keeps GPT-2's ``Conv1D`` layout: weights stored (in, out), the transpose of
``nn.Linear``, and query/key/value fused in ``c_attn`` as columns [q | k | v], which transposed are
exactly the rows [q; k; v] of uer's fused ``qkv``. ``n_inner: null`` means 4 x ``n_embd``.
"""
from __future__ import annotations

from uer.convert.bert import activation
from uer.convert.spec import TRANSPOSE, ConfigKey, Family, Head, Rule, params

LAYER = "transformer.h.{i}"


def conv1d(hf: str, uer: str) -> tuple:
    """A ``Conv1D`` (weight transposed, bias as is) <-> an ``nn.Linear``."""
    return params(hf, uer, weight=TRANSPOSE)


FAMILY = Family(
    model_type="gpt2",
    presets=("gpt2", "gpt2_tiny"),
    prefix="transformer.",
    config=(
        ConfigKey("vocab_size", "vocab_size"),
        ConfigKey("n_positions", "max_seq_length"),
        ConfigKey("n_embd", "dim"),
        ConfigKey("n_layer", "num_layers"),
        ConfigKey("n_head", "num_heads"),
        ConfigKey("n_inner", "ffn_dim", lambda v, c: 4 * c.n_embd if v is None else v,
                  lambda v, m: None if v == 4 * m.dim else v),
        ConfigKey("activation_function", "encoder.ffn.activation", activation),
        ConfigKey("resid_pdrop", "dropout"),
        ConfigKey("embd_pdrop", "embedding.dropout"),
        ConfigKey("attn_pdrop", "encoder.attention.dropout"),
        ConfigKey("layer_norm_epsilon", "norm_eps"),
        ConfigKey("initializer_range", "init_std"),
    ),
    fixed={"scale_attn_weights": (True,), "scale_attn_by_inverse_layer_idx": (False,),
           "reorder_and_upcast_attn": (False,), "add_cross_attention": (False,), "tie_word_embeddings": (True,)},
    body=(
        Rule(("transformer.wte.weight",), "embedding.word.weight"),
        Rule(("transformer.wpe.weight",), "embedding.position.weight"),
        *params(f"{LAYER}.ln_1", "encoder.layers.{i}.attention_norm"),
        *conv1d(f"{LAYER}.attn.c_attn", "encoder.layers.{i}.attention.qkv"),
        *conv1d(f"{LAYER}.attn.c_proj", "encoder.layers.{i}.attention.out"),
        *params(f"{LAYER}.ln_2", "encoder.layers.{i}.ffn_norm"),
        *conv1d(f"{LAYER}.mlp.c_fc", "encoder.layers.{i}.ffn.up"),
        *conv1d(f"{LAYER}.mlp.c_proj", "encoder.layers.{i}.ffn.down"),
        *params("transformer.ln_f", "encoder.final_norm"),
    ),
    heads=(Head("GPT2LMHeadModel", "AutoModelForCausalLM", tied={"lm_head.weight": "transformer.wte.weight"}),),
    ignored=(r"(^|\.)attn\.(masked_)?bias$",),
    max_positions=lambda m: m.max_seq_length,
    generation=True,
    tokenizer_class="GPT2TokenizerFast",
)
