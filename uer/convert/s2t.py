"""S2T (Wang et al. 2020) <-> ``transformers`` ``Speech2TextForConditionalGeneration``, onto the
``s2t_*`` presets.

The encoder starts with two strided Conv1d + GLU layers on the filter banks (uer's
:class:`~uer.embeddings.SpeechEmbedding`: ``embedding.speech.conv.{k}``), the decoder with its word
table (the LM head's weight too); BART's layers in pre-LN order with a final LayerNorm per stack.
Both sides number their fairseq sinusoidal positions from ``pad_token_id + 1`` (uer's
``model.position_offset``); neither stores the tables. uer's ``max_frames`` and ``max_seq_length`` are
table rows, Hugging Face's ``max_source_positions`` / ``max_target_positions`` + 2 (its table size;
it grows the table on demand, uer refuses longer inputs). A label-smoothed uer loss is recorded as
``uer_label_smoothing`` (Hugging Face computes plain cross-entropy; an import without it gets 0).
An export writes ``Speech2TextFeatureExtractor``'s ``preprocessor_config.json`` (80-bin filter banks
with utterance mean and variance normalization, what uer's speech data computes) and starts the decoder
with the tokenizer's eos token, as S2T does.
"""
from __future__ import annotations

from uer.convert.bart import SEQ2SEQ_FIXED, layers, seq2seq_config
from uer.convert.spec import ConfigKey, Family, Head, Rule, params
from uer.data.audio import SAMPLE_RATE
from uer.errors import UerError

TABLE_EXTRA = 2
"""Rows of Hugging Face's position tables beyond ``max_*_positions``."""
CONV_LAYERS = 2
"""Convolutions of the subsampler: every S2T checkpoint has two (uer's rules name each)."""


def position_offset(pad_token_id, _config) -> int:
    """uer's ``model.position_offset`` (row of the first position): the pad id + 1.

    Raises:
        UerError: no pad id (fairseq positions are numbered from it).
    """
    if not isinstance(pad_token_id, int) or pad_token_id < 0:
        raise UerError(f"pad_token_id={pad_token_id!r} has no uer equivalent (S2T numbers positions from it)")
    return pad_token_id + 1


def feature_extractor(model_cfg) -> dict:
    """``preprocessor_config.json`` of ``Speech2TextFeatureExtractor`` for ``model_cfg``'s bins."""
    bins = model_cfg.num_mel_bins
    return {"feature_extractor_type": "Speech2TextFeatureExtractor", "feature_size": bins, "num_mel_bins": bins,
            "sampling_rate": SAMPLE_RATE, "padding_side": "right", "padding_value": 0.0,
            "return_attention_mask": True, "do_ceptral_normalize": True, "normalize_means": True,
            "normalize_vars": True}


SHARED_KEYS = tuple(k for k in seq2seq_config(position_offset=0)
                    if k.hf not in ("max_position_embeddings", "scale_embedding"))

FAMILY = Family(
    model_type="speech_to_text",
    presets=("s2t_small", "s2t_tiny"),
    prefix="model.",
    config=(*SHARED_KEYS,
            ConfigKey("scale_embedding", "scale_embedding"),
            ConfigKey("max_source_positions", "max_frames", lambda v, _c: v + TABLE_EXTRA, lambda v, _m: v - TABLE_EXTRA),
            ConfigKey("max_target_positions", "max_seq_length", lambda v, _c: v + TABLE_EXTRA,
                      lambda v, _m: v - TABLE_EXTRA),
            ConfigKey("pad_token_id", "position_offset", position_offset, lambda v, _m: v - 1),
            ConfigKey("conv_kernel_sizes", "embedding.parts.speech.kernel_sizes", lambda v, _c: list(v),
                      lambda v, _m: list(v)),
            ConfigKey("conv_channels", "conv_channels"),
            ConfigKey("input_feat_per_channel", "num_mel_bins"),
            ConfigKey("uer_label_smoothing", "target.lm.label_smoothing", lambda v, _c: v or 0.0,
                      lambda v, _m: v or None)),
    fixed={**SEQ2SEQ_FIXED, "num_conv_layers": (CONV_LAYERS,), "input_channels": (1,)},
    body=(*(rule for k in range(CONV_LAYERS)
            for rule in params(f"model.encoder.conv.conv_layers.{k}", f"embedding.speech.conv.{k}")),
          *layers(),
          *params("model.encoder.layer_norm", "encoder.final_norm"),
          *params("model.decoder.layer_norm", "decoder.final_norm"),
          Rule(("model.decoder.embed_tokens.weight",), "tgt_embedding.word.weight")),
    heads=(Head("Speech2TextForConditionalGeneration", "AutoModelForSpeechSeq2Seq",
                tied={"lm_head.weight": "model.decoder.embed_tokens.weight"}),),
    max_positions=lambda m: m.max_seq_length - TABLE_EXTRA,
    generation=True,
    token_values=lambda _m, tokenizer: {"decoder_start_token_id": getattr(tokenizer, "eos_token_id", None)},
    image_processor=feature_extractor,
)
