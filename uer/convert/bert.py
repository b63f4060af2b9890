"""BERT (Devlin et al. 2019) <-> ``transformers`` ``BertForPreTraining`` / ``BertForMaskedLM`` /
``BertModel`` and the fine-tuned ``BertForSequenceClassification`` / ``BertForTokenClassification`` /
``BertForQuestionAnswering``.

``BertModel`` has no pretraining heads. It imports into the ``bert_base`` preset's MLM + NSP model:
the pooler is BERT's own, and the MLM transform, the MLM output bias and the NSP classifier, which
the checkpoint does not have, start from uer's seeded initialization and are listed in the
checkpoint's ``config.yaml`` under ``convert.initialized``: honest about what is pretrained, and
ready for continued pretraining. Exporting as ``BertModel`` drops exactly those heads, so
``BertModel`` -> uer -> ``BertModel`` is bit-identical.
"""
from __future__ import annotations

from uer.convert.spec import ConfigKey, Family, Head, Rule, fused_qkv, params
from uer.errors import UerError

ACTIVATIONS = ("gelu", "gelu_new", "quick_gelu", "relu", "silu")


def activation(value, _config):
    """The uer name of a ``hidden_act`` (the same names exist on both sides)."""
    if value not in ACTIVATIONS:
        raise UerError(f"activation {value!r} has no uer equivalent; supported: {', '.join(ACTIVATIONS)}")
    return value


ENCODER_KEYS = (
    ConfigKey("hidden_size", "dim"),
    ConfigKey("num_hidden_layers", "num_layers"),
    ConfigKey("num_attention_heads", "num_heads"),
    ConfigKey("intermediate_size", "ffn_dim"),
    ConfigKey("hidden_act", "encoder.ffn.activation", activation),
    ConfigKey("hidden_dropout_prob", "dropout"),
    ConfigKey("attention_probs_dropout_prob", "encoder.attention.dropout"),
)
"""Encoder sizes and options as BERT-style configs (BERT, RoBERTa, ALBERT, ViT) name them."""


def bert_config(emb_dim: bool = False) -> tuple[ConfigKey, ...]:
    """The config keys of BERT-style models (BERT, RoBERTa; ALBERT with ``emb_dim``)."""
    keys = (
        ConfigKey("vocab_size", "vocab_size"),
        *ENCODER_KEYS,
        ConfigKey("max_position_embeddings", "max_seq_length"),
        ConfigKey("type_vocab_size", "embedding.parts.segment.num_segments"),
        ConfigKey("initializer_range", "init_std"),
        ConfigKey("layer_norm_eps", "norm_eps"),
    )
    return keys + ((ConfigKey("embedding_size", "emb_dim"),) if emb_dim else ())


BERT_FIXED = {"position_embedding_type": ("absolute",), "is_decoder": (False,), "add_cross_attention": (False,),
              "tie_word_embeddings": (True,)}


def bert_body(prefix: str) -> tuple:
    """Embeddings and post-LN layers as BERT and RoBERTa name them."""
    layer = f"{prefix}encoder.layer.{{i}}"
    return (
        *params(f"{prefix}embeddings.LayerNorm", "embedding.norm"),
        *fused_qkv(f"{layer}.attention.self.query", f"{layer}.attention.self.key", f"{layer}.attention.self.value",
                   "encoder.layers.{i}.attention.qkv"),
        *params(f"{layer}.attention.output.dense", "encoder.layers.{i}.attention.out"),
        *params(f"{layer}.attention.output.LayerNorm", "encoder.layers.{i}.attention_norm"),
        *params(f"{layer}.intermediate.dense", "encoder.layers.{i}.ffn.up"),
        *params(f"{layer}.output.dense", "encoder.layers.{i}.ffn.down"),
        *params(f"{layer}.output.LayerNorm", "encoder.layers.{i}.ffn_norm"),
    ) + embeddings(prefix)


def embeddings(prefix: str) -> tuple:
    """Word, position and token type tables (BERT, RoBERTa, ALBERT)."""
    return (Rule((f"{prefix}embeddings.word_embeddings.weight",), "embedding.word.weight"),
            Rule((f"{prefix}embeddings.position_embeddings.weight",), "embedding.position.weight"),
            Rule((f"{prefix}embeddings.token_type_embeddings.weight",), "embedding.segment.weight"))


def mlm_head(prefix: str) -> tuple:
    """BERT's MLM transform and output bias (the decoder weight is the word table)."""
    return (*params(f"{prefix}.transform.dense", "target.mlm.dense"),
            *params(f"{prefix}.transform.LayerNorm", "target.mlm.norm"),
            Rule((f"{prefix}.bias",), "target.mlm.decoder.bias"))


def task_heads(model: str, sequence: tuple[Rule, ...]) -> tuple[Head, ...]:
    """``<model>ForSequenceClassification`` (the ``sequence`` rules: its pooler and classifier onto
    the ``seq_cls`` target), ``<model>ForTokenClassification`` and ``<model>ForQuestionAnswering``;
    num_labels and id2label travel in config.json (see :mod:`uer.convert.reader` and :mod:`uer.convert.api`)."""
    return (
        Head(f"{model}ForSequenceClassification", "AutoModelForSequenceClassification", target="seq_cls",
             rules=sequence),
        Head(f"{model}ForTokenClassification", "AutoModelForTokenClassification", target="token_cls",
             rules=params("classifier", "target.token_cls.classifier")),
        Head(f"{model}ForQuestionAnswering", "AutoModelForQuestionAnswering", target="span",
             rules=params("qa_outputs", "target.span.outputs")),
    )


MLM_TIED = {"cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
            "cls.predictions.decoder.bias": "cls.predictions.bias"}

FAMILY = Family(
    model_type="bert",
    presets=("bert_base", "bert_mini", "bert_tiny"),
    prefix="bert.",
    config=bert_config(),
    fixed=BERT_FIXED,
    body=bert_body("bert."),
    heads=(
        Head("BertForPreTraining", "AutoModelForPreTraining",
             rules=(*params("bert.pooler.dense", "target.sp.pooler"), *mlm_head("cls.predictions"),
                    *params("cls.seq_relationship", "target.sp.classifier")),
             tied=MLM_TIED),
        Head("BertForMaskedLM", "AutoModelForMaskedLM", target="mlm", rules=mlm_head("cls.predictions"),
             tied=MLM_TIED, unused=("bert.pooler.dense.weight", "bert.pooler.dense.bias")),
        Head("BertModel", "AutoModel", rules=params("bert.pooler.dense", "target.sp.pooler"),
             uer_only=("target.mlm.", "target.sp.classifier."), base_model=True),
        *task_heads("Bert", (*params("bert.pooler.dense", "target.cls.pooler"),
                             *params("classifier", "target.cls.classifier"))),
    ),
    max_positions=lambda m: m.max_seq_length,
    input_names=("input_ids", "token_type_ids", "attention_mask"),
    tokenizer_class="BertTokenizerFast",
)
