"""RoBERTa (Liu et al. 2019) <-> ``transformers`` ``RobertaForMaskedLM`` and the fine-tuned
``RobertaForSequenceClassification`` (its classification head's dense + tanh is uer's pooler) /
``RobertaForTokenClassification`` / ``RobertaForQuestionAnswering``.

RoBERTa numbers positions from ``pad_token_id + 1`` (fairseq's ``make_positions``); uer's position
embedding takes that as its ``offset``, so the 514-row table copies row for row. The two agree
wherever the batch is right-padded, which is how uer's collators pad. The LM head's activation is
always exact GELU in ``transformers``, whatever ``hidden_act`` says, so the uer head is pinned to it.
"""
from __future__ import annotations

from uer.convert.bert import BERT_FIXED, bert_body, bert_config, task_heads
from uer.convert.spec import ConfigKey, Family, Head, Rule, params
from uer.errors import UerError


def first_position(pad_token_id, _config):
    """uer position offset from RoBERTa's ``pad_token_id``."""
    if pad_token_id is None:
        raise UerError("RoBERTa config.json has no pad_token_id, which fixes where its positions start")
    return pad_token_id + 1


FAMILY = Family(
    model_type="roberta",
    presets=("roberta_base",),
    prefix="roberta.",
    config=bert_config() + (ConfigKey("pad_token_id", "embedding.parts.position.offset", first_position,
                                      lambda offset, _m: offset - 1),),
    fixed=BERT_FIXED,
    body=bert_body("roberta."),
    heads=(
        Head("RobertaForMaskedLM", "AutoModelForMaskedLM", overrides=("model.target.mlm.activation=gelu",),
             rules=(*params("lm_head.dense", "target.mlm.dense"), *params("lm_head.layer_norm", "target.mlm.norm"),
                    Rule(("lm_head.bias",), "target.mlm.decoder.bias")),
             tied={"lm_head.decoder.weight": "roberta.embeddings.word_embeddings.weight",
                   "lm_head.decoder.bias": "lm_head.bias"},
             unused=("roberta.pooler.dense.weight", "roberta.pooler.dense.bias")),
        *task_heads("Roberta", (*params("classifier.dense", "target.cls.pooler"),
                                *params("classifier.out_proj", "target.cls.classifier"))),
    ),
    max_positions=lambda m: m.max_seq_length - m.embedding.parts.position.offset,
    tokenizer_class="RobertaTokenizerFast",
)
