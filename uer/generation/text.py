"""Text in, text out: load a generative checkpoint and continue (causal LM) or transform
(encoder-decoder) lines of text in batches. The library side of ``uer-generate``."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

from uer.convert import load_pretrained
from uer.data.seq2seq import role_id
from uer.errors import UerError
from uer.generation.generate import generate, is_encoder_decoder


def load_generator(path: str | Path, allowed_targets: Iterable[str] = ()) -> tuple[nn.Module, object, int | None]:
    """The model (eval mode, strictly loaded), tokenizer and decoder start id of a uer checkpoint, or
    of a Hugging Face model directory (converted on the fly): :func:`uer.convert.load_pretrained`.

    The decoder start id (encoder-decoders only, else None) is the Hugging Face config's
    ``decoder_start_token_id`` for a converted model, else the id of the ``data.decoder_start`` role
    the checkpoint was trained with, in the target-side tokenizer.

    Args:
        allowed_targets: ``_target_`` prefixes trusted besides ``uer.``.

    Raises:
        UerError: not a checkpoint, no model section or tokenizer, a ``_target_`` outside the
            allowed prefixes, weights that do not fit, a model that cannot generate, or an
            encoder-decoder whose checkpoint does not say how the decoder starts.
    """
    path = Path(path)
    model, cfg, tokenizer = load_pretrained(path, allowed_targets)
    if tokenizer is None:
        raise UerError(f"{path}: the checkpoint has no tokenizer.json")
    return model, tokenizer, decoder_start_id(cfg, tokenizer, path) if is_encoder_decoder(model) else None


def decoder_start_id(cfg, tokenizer, path: Path) -> int:
    """The first decoder input of the encoder-decoder checkpoint at ``path`` with config ``cfg``: the
    Hugging Face config's ``decoder_start_token_id`` for a converted model, else the id of the
    ``data.decoder_start`` role in the target-side tokenizer.

    Raises:
        UerError: the checkpoint says neither.
    """
    start = OmegaConf.select(cfg, "convert.hf_config.decoder_start_token_id")
    role = OmegaConf.select(cfg, "data.decoder_start")
    if start is None and role is not None:
        start = role_id(target_side(tokenizer), role, f"{path / 'config.yaml'}: data.decoder_start")
    if start is None:
        raise UerError(f"{path / 'config.yaml'}: neither data.decoder_start nor "
                       "convert.hf_config.decoder_start_token_id says how the decoder starts")
    return start


def target_side(tokenizer):
    """The tokenizer of generated text: the target-side one of a translation pair, else ``tokenizer``."""
    return tokenizer.target if getattr(tokenizer, "target", None) is not None else tokenizer


def special_ids(tokenizer) -> dict[str, int | None]:
    """The ids generation needs from a tokenizer: ``bos`` (starts a causal prompt), ``eos``
    (stops a row; [SEP] when there is no eos, as the data processors separate documents) and
    ``pad`` (pad, else eos, else 0)."""
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    pad = next((i for i in (tokenizer.pad_token_id, eos) if i is not None), 0)
    return {"bos": tokenizer.bos_token_id, "eos": eos, "pad": pad}


def encode_prompts(tokenizer, texts: list[str], encoder_decoder: bool, add_bos: bool = True
                   ) -> dict[str, torch.Tensor]:
    """Token ids of ``texts`` as a batch ``{input_ids (B, S), attention_mask (B, S)}``: causal LM
    prompts left-padded (new tokens follow them directly), encoder-decoder sources right-padded
    (positions from 0, as in training).

    A causal LM prompt starts with the bos token (documents follow an end-of-text token in the
    ``lm`` data), when the tokenizer has one and ``add_bos`` (a prompt rendered by a chat template
    holds its own). An encoder-decoder source ends with eos and starts with
    bos when the tokenizer has a bos distinct from eos (BART's ``<s> ... </s>``; T5 has no bos).

    Raises:
        UerError: a causal LM prompt with no token at all (empty line, tokenizer without bos).
    """
    ids = special_ids(tokenizer)
    rows = tokenizer.encode_batch(texts)
    if encoder_decoder:
        head = [ids["bos"]] if ids["bos"] not in (None, ids["eos"]) else []
        tail = [ids["eos"]] if ids["eos"] is not None else []
        rows = [head + row + tail for row in rows]
    elif ids["bos"] is not None and add_bos:
        rows = [[ids["bos"]] + row for row in rows]
    for i, row in enumerate(rows):
        if not row:
            raise UerError(f"prompt {i + 1} is empty and the tokenizer has no bos token to start it")
    longest = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), longest), ids["pad"], dtype=torch.long)
    attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for i, row in enumerate(rows):
        real = slice(0, len(row)) if encoder_decoder else slice(longest - len(row), longest)
        input_ids[i, real] = torch.tensor(row)
        attention_mask[i, real] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def generate_text(model: nn.Module, tokenizer, texts: list[str], batch_size: int = 8,
                  device: str | torch.device = "cpu", decoder_start_token_id: int | None = None,
                  add_bos: bool = True, **options) -> list[str]:
    """One generated text per input text: the continuation of a causal LM prompt, or the output of
    an encoder-decoder (in the target-side tokenizer), decoded up to EOS without special tokens, on
    one line.

    Args:
        decoder_start_token_id: the first decoder input of an encoder-decoder (see :func:`load_generator`).
        add_bos: start causal LM prompts with the bos token (see :func:`encode_prompts`).
        options: passed to :func:`~uer.generation.generate.generate` (``max_new_tokens``,
            ``strategy``, ``num_beams`` ...); eos and pad ids come from the (target-side) tokenizer.

    Raises:
        UerError: bad options or prompts (see :func:`generate`, :func:`encode_prompts`).
    """
    if batch_size < 1:
        raise UerError(f"batch size must be >= 1, got {batch_size}")
    encoder_decoder = is_encoder_decoder(model)
    output_tokenizer = target_side(tokenizer) if encoder_decoder else tokenizer
    ids = special_ids(output_tokenizer)
    model.to(device)
    outputs = []
    for first in range(0, len(texts), batch_size):
        batch = encode_prompts(tokenizer, texts[first:first + batch_size], encoder_decoder, add_bos)
        batch = {key: value.to(device) for key, value in batch.items()}
        tokens = generate(model, batch, eos_token_id=ids["eos"], pad_token_id=ids["pad"],
                          decoder_start_token_id=decoder_start_token_id, **options)
        for row in tokens.tolist():
            if ids["eos"] in row:
                row = row[:row.index(ids["eos"])]
            outputs.append(" ".join(output_tokenizer.decode(row, skip_special_tokens=True).split()))
    return outputs
