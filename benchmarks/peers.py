"""The ``transformers`` peer of a uer preset, and batches that both models accept.

Three families, each checked against the resolved uer model config so that only a preset the peer
computes the same way is benchmarked (anything else exits with the list of differences):

- ``bert`` (post-LN, MLM + NSP) vs ``BertForPreTraining`` (Devlin et al. 2019);
- ``gpt2`` (pre-LN, causal, tied LM head) vs ``GPT2LMHeadModel`` (Radford et al. 2019);
- ``vit`` (pre-LN, [CLS] classifier) vs ``ViTForImageClassification`` (Dosovitskiy et al. 2021).

The peer's config is built from the same values (widths, vocabulary or image/patch sizes, dropouts,
activation, norm epsilon, init std) with ``attn_implementation="sdpa"``. Batches are full length and
unpadded, so neither side gets an attention mask.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from transformers import (
    BertConfig,
    BertForPreTraining,
    GPT2Config,
    GPT2LMHeadModel,
    ViTConfig,
    ViTForImageClassification,
)

from uer.data.masking import MlmCollator

SPECIALS = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}  # layout of uer's shipped KJV WordPiece
PLAIN = {"encoder.norm._target_": "uer.layers.LayerNorm", "encoder.ffn.gated": False, "encoder.ffn.bias": True,
         "encoder.attention.bias": True, "encoder.attention.num_kv_heads": None, "encoder.attention.rotary": None,
         "encoder.share_layers": False, "encoder.final_norm": None}
"""Encoder options every peer here has."""


@dataclass(frozen=True)
class Family:
    """How to benchmark one family: its peer, its batches, what its rate counts.

    ``peer(m) -> (model, loss)``: the ``transformers`` model for the resolved uer model config ``m``
    and ``loss(batch) -> scalar``. ``batches(m, n, batch, seq, seed)``: ``n`` batches (dicts of
    tensors) for both sides. ``unit``: "tokens" (B·S per batch) or "images" (B). ``chance(m)``: the
    loss of a uniform prediction, printed beside both initial losses. ``note``: the setup in words.
    """

    name: str
    unit: str
    batch: int
    seq: int | None
    peer: Callable
    batches: Callable
    chance: Callable[[DictConfig], float]
    note: str

    def items(self, batch: dict[str, torch.Tensor]) -> int:
        """Tokens (B·S) or images (B) in ``batch``."""
        return batch["input_ids"].numel() if self.unit == "tokens" else batch["pixel_values"].shape[0]


def require(m: DictConfig, family: str, expected: dict) -> None:
    """Exit (``SystemExit`` with one line) unless every dotted key of ``expected`` has that value in
    ``m`` and the embedding width equals the model width."""
    wrong = [f"{k}={OmegaConf.select(m, k)!r} (need {v!r})" for k, v in {**PLAIN, **expected}.items()
             if OmegaConf.select(m, k) != v]
    if m.get("emb_dim", m.dim) != m.dim:
        wrong.append(f"emb_dim={m.emb_dim} != dim={m.dim}")
    if wrong:
        raise SystemExit(f"preset {m.name} differs from the transformers {family} peer: {'; '.join(wrong)}")


def bert_peer(m: DictConfig):
    require(m, "BERT", {"encoder.norm_position": "post", "encoder.mask": "fully_visible",
                        "embedding.norm": "layernorm", "embedding.dropout": m.encoder.dropout})
    model = BertForPreTraining(BertConfig(
        vocab_size=m.vocab_size, hidden_size=m.dim, num_hidden_layers=m.num_layers, num_attention_heads=m.num_heads,
        intermediate_size=m.ffn_dim, hidden_act=m.encoder.ffn.activation, hidden_dropout_prob=m.encoder.dropout,
        attention_probs_dropout_prob=m.encoder.attention.dropout, max_position_embeddings=m.max_seq_length,
        type_vocab_size=2, layer_norm_eps=m.norm_eps, initializer_range=m.init_std, pad_token_id=SPECIALS["pad"],
        attn_implementation="sdpa"))
    return model, lambda b: model(input_ids=b["input_ids"], token_type_ids=b["token_type_ids"],
                                  attention_mask=b.get("attention_mask"), labels=b["labels"],
                                  next_sentence_label=b["next_sentence_label"]).loss


def bert_batches(m: DictConfig, n: int, batch: int, seq: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Full-length ``[CLS] A [SEP] B [SEP]`` rows of random ordinary ids (A's length random),
    ``token_type_ids`` 0 for A and 1 for B, random ``next_sentence_label`` (B,), masked by uer's
    :class:`~uer.data.masking.MlmCollator` (15%, 80/10/10, one ``numpy`` generator per row)."""
    rng = np.random.default_rng(seed)
    collator = MlmCollator(list(SPECIALS.values()), SPECIALS["pad"], SPECIALS["mask"], m.vocab_size, 0.15)
    out = []
    for b in range(n):
        rows: dict[str, list] = {"input_ids": [], "token_type_ids": [], "next_sentence_label": []}
        for _ in range(batch):
            a = int(rng.integers(1, seq - 3))  # A gets a tokens, B the remaining seq - 3 - a
            ids = rng.integers(len(SPECIALS), m.vocab_size, seq - 3).tolist()
            rows["input_ids"].append([SPECIALS["cls"], *ids[:a], SPECIALS["sep"], *ids[a:], SPECIALS["sep"]])
            rows["token_type_ids"].append([0] * (a + 2) + [1] * (seq - a - 2))
            rows["next_sentence_label"].append(int(rng.integers(0, 2)))
        out.append(collator(rows, [np.random.default_rng([seed, b, i]) for i in range(batch)]))
    return out


def gpt2_peer(m: DictConfig):
    require(m, "GPT-2", {"encoder.norm_position": "pre", "encoder.mask": "causal", "embedding.norm": None,
                         "target.lm.bias": False, "target.lm.tie_decoder_to": "embedding.word.weight"})
    model = GPT2LMHeadModel(GPT2Config(
        vocab_size=m.vocab_size, n_positions=m.max_seq_length, n_embd=m.dim, n_layer=m.num_layers,
        n_head=m.num_heads, n_inner=m.ffn_dim, activation_function=m.encoder.ffn.activation,
        resid_pdrop=m.encoder.dropout, embd_pdrop=m.embedding.dropout, attn_pdrop=m.encoder.attention.dropout,
        layer_norm_epsilon=m.norm_eps, initializer_range=m.init_std, tie_word_embeddings=True,
        bos_token_id=None, eos_token_id=None, attn_implementation="sdpa"))  # 50256 is outside the vocabulary
    return model, lambda b: model(input_ids=b["input_ids"], attention_mask=b.get("attention_mask"),
                                  labels=b["labels"]).loss


def lm_batches(m: DictConfig, n: int, batch: int, seq: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """``input_ids`` (B, S) uniform over the vocabulary and ``labels`` equal to them (both sides
    shift by one inside the loss), as uer's ``LmCollator`` makes for packed, unpadded blocks."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(0, m.vocab_size, (batch, seq), generator=generator)
        out.append({"input_ids": ids, "labels": ids.clone()})
    return out


def vit_peer(m: DictConfig):
    require(m, "ViT", {"encoder.norm_position": "pre", "encoder.mask": "fully_visible", "embedding.norm": None,
                       "embedding.dropout": m.encoder.dropout, "target.cls.pooling": "first",
                       "target.cls.pooler": False})
    model = ViTForImageClassification(ViTConfig(
        hidden_size=m.dim, num_hidden_layers=m.num_layers, num_attention_heads=m.num_heads,
        intermediate_size=m.ffn_dim, hidden_act=m.encoder.ffn.activation, hidden_dropout_prob=m.encoder.dropout,
        attention_probs_dropout_prob=m.encoder.attention.dropout, layer_norm_eps=m.norm_eps,
        initializer_range=m.init_std, image_size=m.image_size, patch_size=m.patch_size,
        num_channels=m.channels, qkv_bias=True, num_labels=m.num_labels, attn_implementation="sdpa"))
    return model, lambda b: model(pixel_values=b["pixel_values"], labels=b["labels"]).loss


def image_batches(m: DictConfig, n: int, batch: int, _seq: None, seed: int) -> list[dict[str, torch.Tensor]]:
    """``pixel_values`` (B, C, H, W) float32 standard normal (already-normalized images) and
    ``labels`` (B,) int64 uniform over the classes."""
    generator = torch.Generator().manual_seed(seed)
    return [{"pixel_values": torch.randn(batch, m.channels, m.image_size, m.image_size, generator=generator),
             "labels": torch.randint(0, m.num_labels, (batch,), generator=generator)} for _ in range(n)]


FAMILIES = {
    "bert": Family("bert", "tokens", 32, 128, bert_peer, bert_batches, lambda m: math.log(m.vocab_size) + math.log(2),
                   "MLM head: uer computes it at the masked positions only, transformers at every position "
                   "(kept: a real difference of the two implementations)"),
    "gpt2": Family("gpt2", "tokens", 8, 512, gpt2_peer, lm_batches, lambda m: math.log(m.vocab_size),
                   "LM head: uer scores positions 0..S-2 (the ones with a next token), transformers computes "
                   "logits at all S positions and drops the last in the loss"),
    "vit": Family("vit", "images", 32, None, vit_peer, image_batches, lambda m: math.log(m.num_labels),
                  "classifier on the final-norm [CLS] vector on both sides"),
}


def family_of(m: DictConfig) -> Family:
    """The family whose peer fits the resolved uer model config ``m`` (by its targets and embedding).

    Raises:
        SystemExit: no family here has these targets.
    """
    targets = sorted(k for k in m.target if k not in ("_target_", "weights"))
    parts = set(m.embedding.get("parts", {}))
    name = {("mlm", "sp"): "bert", ("lm",): "gpt2"}.get(tuple(targets))
    if targets == ["cls"] and "patch" in parts:
        name = "vit"
    if name is None:
        raise SystemExit(f"preset {m.name} (targets {', '.join(targets)}) has no transformers peer here; "
                         "use a bert_*, gpt2* or vit_* preset")
    return FAMILIES[name]
