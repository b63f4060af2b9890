"""PEGASUS (Zhang et al. 2020) <-> ``transformers`` ``PegasusForConditionalGeneration``.

It maps cleanly: BART's layers in pre-LN order with a final LayerNorm per stack, no embedding
LayerNorm, word embeddings scaled by sqrt(d_model) (``scale_embedding``) and sinusoidal positions
with the sines in the first half of each vector. ``transformers`` stores the sinusoid tables in the
checkpoint; uer keeps them as persistent (untrained) buffers and copies them as they are.
"""
from __future__ import annotations

from uer.convert.bart import SEQ2SEQ_FIXED, embeddings, layers, lm_head, seq2seq_config
from uer.convert.spec import Family, params

FAMILY = Family(
    model_type="pegasus",
    presets=("pegasus_base",),
    prefix="model.",
    config=seq2seq_config(position_offset=0),
    fixed={**SEQ2SEQ_FIXED, "normalize_before": (True,), "add_final_layer_norm": (True,),
           "static_position_embeddings": (True,)},
    body=(*embeddings(), *layers(),
          *params("model.encoder.layer_norm", "encoder.final_norm"),
          *params("model.decoder.layer_norm", "decoder.final_norm")),
    heads=(lm_head("PegasusForConditionalGeneration"),),
    max_positions=lambda m: m.max_seq_length,
    generation=True,
    tokenizer_class="PegasusTokenizerFast",
)
