"""The translation Transformer (Vaswani et al. 2017; presets ``transformer_base``, ``transformer_tiny``)
<-> ``transformers`` ``MarianMTModel`` (the Marian NMT architecture of Junczys-Dowmunt et al. 2018).

It maps cleanly: post-LN encoder and decoder layers as BART names them (:func:`uer.convert.bart.layers`),
no embedding LayerNorm and no final LayerNorm, word embeddings scaled by sqrt(d_model), sinusoidal
positions numbered from 0 with the sines in the first half of each vector (uer's ``paper`` table),
and separate source and target vocabularies (``share_encoder_decoder_embeddings: false``,
``decoder_vocab_size`` = ``model.tgt_vocab_size``) with the LM head tied to the target table.
``final_logits_bias`` (a buffer, trained by Marian NMT, zeros in transformers' fresh models) is the
LM head's bias (``model.target.lm.bias=true``) when a checkpoint has it; the presets have none, so
their export leaves it out and transformers fills in zeros. ``transformers`` does not save the
sinusoid tables (it rebuilds them): an export leaves them out too, and an import builds uer's own,
equal to them (listed under ``convert.initialized``). (transformers 5.24's ``from_pretrained`` leaves its rebuilt tables trainable, for its
own saves as well; uer's are constant buffers, as in the paper.)

Tokenizers: ``MarianTokenizer`` is a pair of SentencePiece models, which uer's WordPiece/BPE
vocabularies are not; the export writes the source tokenizer as ``tokenizer.json`` (generic
``PreTrainedTokenizerFast``) and the target one under ``tgt_tokenizer/``. ``decoder_start_token_id``
is the target side's eos, as the ``mt`` data starts the decoder by default (``data.decoder_start: eos``).
"""
from __future__ import annotations

from uer.convert.bart import SEQ2SEQ_FIXED, layers, seq2seq_config
from uer.convert.spec import ROW, ConfigKey, Family, Head, Rule
from uer.errors import UerError


def token_values(_model_cfg, tokenizer) -> dict:
    """Token ids of config.json from the (target-side) tokenizer: pad, eos and the decoder start (eos).

    Raises:
        UerError: no tokenizer (MarianConfig's default ids, 58100, fit no uer vocabulary).
    """
    if tokenizer is None:
        raise UerError("a translation Transformer exports with its tokenizer (the decoder's start and end ids); "
                       "this checkpoint has none")
    target = tokenizer.target if getattr(tokenizer, "target", None) is not None else tokenizer
    eos = target.eos_token_id if target.eos_token_id is not None else target.sep_token_id
    return {"pad_token_id": target.pad_token_id, "eos_token_id": eos, "decoder_start_token_id": eos,
            "forced_eos_token_id": eos}


TIED = {"lm_head.weight": "model.decoder.embed_tokens.weight"}
SINUSOIDS = ("embedding.position.", "tgt_embedding.position.")
"""uer's sinusoid tables: built by uer on import (listed under ``convert.initialized``), left out on
export, as transformers leaves them out of its saves."""

FAMILY = Family(
    model_type="marian",
    presets=("transformer_base", "transformer_tiny"),
    prefix="model.",
    config=(*seq2seq_config(position_offset=0), ConfigKey("decoder_vocab_size", "tgt_vocab_size"),
            ConfigKey("share_encoder_decoder_embeddings", "tgt_embedding.parts.word.tie_to",
                      lambda v, _c: "embedding.word.weight" if v else None, lambda v, _m: v is not None)),
    fixed={**SEQ2SEQ_FIXED, "share_encoder_decoder_embeddings": (False,)},
    body=(Rule(("model.encoder.embed_tokens.weight",), "embedding.word.weight"),
          Rule(("model.decoder.embed_tokens.weight",), "tgt_embedding.word.weight"),
          *layers()),
    heads=(Head("MarianMTModel", "AutoModelForSeq2SeqLM", overrides=("model.target.lm.bias=true",),
                rules=(Rule(("final_logits_bias",), "target.lm.decoder.bias", ROW),), tied=TIED, uer_only=SINUSOIDS),
           Head("MarianMTModel", "AutoModelForSeq2SeqLM", tied=TIED, uer_only=SINUSOIDS)),
    max_positions=lambda m: m.max_seq_length,
    generation=True,
    token_values=token_values,
)
