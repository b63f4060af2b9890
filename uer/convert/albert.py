"""ALBERT (Lan et al. 2020) <-> ``transformers`` ``AlbertForPreTraining`` / ``AlbertForMaskedLM`` and the
fine-tuned ``AlbertForSequenceClassification`` / ``AlbertForTokenClassification`` /
``AlbertForQuestionAnswering``.

The factorized embedding (E -> H projection) and the one layer shared by all L layers map onto
uer's ``emb_dim`` + ``embedding.project_dim`` and ``encoder.share_layers``; ``transformers``
configs with several layer groups or inner layers have no uer equivalent and are refused.
"""
from __future__ import annotations

from uer.convert.bert import BERT_FIXED, bert_config, embeddings, task_heads
from uer.convert.spec import Family, Head, Rule, fused_qkv, params

LAYER = "albert.encoder.albert_layer_groups.0.albert_layers.0"

MLM = (*params("predictions.dense", "target.mlm.dense"), *params("predictions.LayerNorm", "target.mlm.norm"),
       Rule(("predictions.bias",), "target.mlm.decoder.bias"))
MLM_TIED = {"predictions.decoder.weight": "albert.embeddings.word_embeddings.weight",
            "predictions.decoder.bias": "predictions.bias"}

FAMILY = Family(
    model_type="albert",
    presets=("albert_base",),
    prefix="albert.",
    config=bert_config(emb_dim=True),
    fixed={**BERT_FIXED, "num_hidden_groups": (1,), "inner_group_num": (1,)},
    body=(
        *embeddings("albert."),
        *params("albert.embeddings.LayerNorm", "embedding.norm"),
        *params("albert.encoder.embedding_hidden_mapping_in", "embedding.project"),
        *fused_qkv(f"{LAYER}.attention.query", f"{LAYER}.attention.key", f"{LAYER}.attention.value",
                   "encoder.layers.{i}.attention.qkv"),
        *params(f"{LAYER}.attention.dense", "encoder.layers.{i}.attention.out"),
        *params(f"{LAYER}.attention.LayerNorm", "encoder.layers.{i}.attention_norm"),
        *params(f"{LAYER}.ffn", "encoder.layers.{i}.ffn.up"),
        *params(f"{LAYER}.ffn_output", "encoder.layers.{i}.ffn.down"),
        *params(f"{LAYER}.full_layer_layer_norm", "encoder.layers.{i}.ffn_norm"),
    ),
    heads=(
        Head("AlbertForPreTraining", "AutoModelForPreTraining",
             rules=(*params("albert.pooler", "target.sp.pooler"), *MLM,
                    *params("sop_classifier.classifier", "target.sp.classifier")),
             tied=MLM_TIED),
        Head("AlbertForMaskedLM", "AutoModelForMaskedLM", target="mlm", rules=MLM, tied=MLM_TIED,
             unused=("albert.pooler.weight", "albert.pooler.bias")),
        *task_heads("Albert", (*params("albert.pooler", "target.cls.pooler"),
                               *params("classifier", "target.cls.classifier"))),
    ),
    max_positions=lambda m: m.max_seq_length,
    input_names=("input_ids", "token_type_ids", "attention_mask"),
    tokenizer_class="AlbertTokenizerFast",
)
