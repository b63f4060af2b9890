"""Which collator turns a processor's rows into model batches."""
from __future__ import annotations

from omegaconf import DictConfig

from uer.data.causal import LmCollator
from uer.data.images import ImageCollator
from uer.data.masking import MlmCollator
from uer.data.seq2seq_collators import SEQ2SEQ, make_seq2seq_collator
from uer.errors import UerError

MASKED = ("bert", "albert", "mlm")


def make_collator(data_cfg: DictConfig, tokenizer):
    """The collator for ``data_cfg.processor``: dynamic MLM masking for bert/albert/mlm, padding
    with ignored labels for lm, decode + resize for image; the denoising and sequence-to-sequence
    collators of `uer.data.seq2seq_collators` for t5, bart, gsg, mt and prefixlm.

    Raises:
        UerError: unknown processor, or a tokenizer without the special tokens the objective needs.
    """
    name = data_cfg.processor
    if name in MASKED:
        if not 0 < data_cfg.mask_prob < 1:
            raise UerError(f"data.mask_prob={data_cfg.mask_prob}: must be between 0 and 1")
        try:
            return MlmCollator(tokenizer.all_special_ids, tokenizer.pad_token_id, tokenizer.mask_token_id,
                               tokenizer.vocab_size, data_cfg.mask_prob)
        except ValueError as e:
            raise UerError(f"data.tokenizer={data_cfg.tokenizer}: {e}") from None
    if name == "lm":
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            raise UerError(f"data.tokenizer={data_cfg.tokenizer}: causal LM needs a pad or end-of-text token")
        return LmCollator(pad)
    if name == "image":
        return ImageCollator(data_cfg.image_size, data_cfg.channels)
    if name in SEQ2SEQ:
        return make_seq2seq_collator(data_cfg, tokenizer)
    raise UerError(f"data.processor={name}: no collator for it")
