"""Multi-head attention through ``torch.nn.functional.scaled_dot_product_attention`` (Vaswani et al.
2017): self-attention with a fused q/k/v projection and cross-attention to an encoder memory, and the
mask forms SDPA expects (fully visible, causal, prefix; with or without a key/value cache)."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from uer.layers.dropout import dropout
from uer.layers.kv_cache import KVCache

PATTERNS = ("fully_visible", "causal", "prefix")


def packed_documents(position_ids: torch.Tensor) -> torch.Tensor:
    """(B, S) int64 document index of every position of packed sequences, from their (B, S)
    ``position_ids``: a document starts wherever a position does not follow its left neighbour by
    one (positions restart at each packed document), as transformers' ``find_packed_sequence_indices``
    (``masking_utils``) reads a packed batch. Positions that count on after the last document
    (padding) stay in it."""
    first = position_ids[:, :1] - 1
    return (torch.diff(position_ids, prepend=first, dim=-1) != 1).cumsum(-1)


def attention_mask(mask: torch.Tensor | None, pattern: str, length: int, past: int = 0,
                   prefix: torch.Tensor | None = None, explicit: bool = False,
                   documents: torch.Tensor | None = None) -> tuple[torch.Tensor | None, bool]:
    """Turn a padding mask and an attention pattern into SDPA's ``(attn_mask, is_causal)``.

    Queries are the ``length`` newest positions ``past .. past + length - 1``; keys are all
    ``past + length`` positions (``past`` > 0 when earlier keys come from a :class:`KVCache`).

    Args:
        mask: (B, past + length) bool, True = real token, or None when no position is padding.
        pattern: ``fully_visible`` (BERT, ViT, T5 encoder), ``causal`` (GPT, decoders) or ``prefix``
            (Raffel et al. 2020 / UniLM: prefix positions see the whole prefix, the others are causal).
        length: number of query positions.
        past: number of cached key positions before them.
        prefix: (B, past + length) bool, True = prefix (source) position; required for ``prefix``.
        explicit: never answer with ``is_causal=True``; return the bool mask instead (for callers that
            add a position bias).
        documents: (B, past + length) int, the document of each position (:func:`packed_documents`);
            with ``causal``, a query sees only the keys of its own document: a block-diagonal causal
            mask, so documents packed into one sequence never attend to each other.

    Returns:
        ``attn_mask``: None (nothing to mask, the fastest SDPA path), or a bool tensor broadcastable
        to (B, H, length, past + length) where True = may attend; ``is_causal``: True when SDPA should
        apply the causal pattern itself (square, no padding mask, not ``explicit``).

    Raises:
        ValueError: unknown pattern, or ``prefix`` pattern without ``prefix``.
    """
    if pattern not in PATTERNS:
        raise ValueError(f"unknown attention pattern {pattern!r}; choose one of {', '.join(PATTERNS)}")
    if pattern == "prefix" and prefix is None:
        raise ValueError("the prefix attention pattern needs the prefix positions (token_type_ids == 0)")
    keys = None if mask is None else mask[:, None, None, :].bool()  # (B, 1, 1, K)
    if pattern == "fully_visible" or (pattern == "causal" and length == 1 and documents is None):
        return keys, False
    if pattern == "causal" and keys is None and past == 0 and not explicit and documents is None:
        return None, True
    device = next((t.device for t in (mask, prefix, documents) if t is not None), None)
    q = torch.arange(past, past + length, device=device)[:, None]
    visible = torch.arange(past + length, device=device)[None, :] <= q  # (length, K)
    if pattern == "prefix":
        visible = visible | prefix[:, None, None, :].bool()
    if documents is not None and pattern == "causal":
        visible = visible & (documents[:, None, past:, None] == documents[:, None, None, :])  # (B, 1, length, K)
    return visible if keys is None else keys & visible, False


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
           is_causal: bool = False, dropout_p: float = 0.0, scale: float | None = None) -> torch.Tensor:
    """``torch.nn.functional.scaled_dot_product_attention`` (same arguments and result: q (B, H, T, Dh),
    k and v (B, Hkv, K, Dh) -> (B, H, T, Dh)), except on CPU with ``dropout_p`` > 0. With Hkv < H
    (grouped-query attention) query heads h·H/Hkv .. (h+1)·H/Hkv - 1 share key/value head h: SDPA's
    ``enable_gqa`` reads them in place, without copies of k and v per query head.

    There SDPA falls back to its math path and draws the probability dropout with ``bernoulli_``;
    this computes the same math path (softmax(q·kᵀ·scale + mask), dropout, ·v) with
    :func:`uer.layers.dropout.dropout`'s cheaper mask. Masked scores get the dtype's lowest value
    rather than -inf, so a row with no visible key averages the values instead of becoming NaN.
    """
    grouped = k.shape[1] != q.shape[1]
    if dropout_p == 0 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal,
                                              dropout_p=dropout_p, scale=scale, enable_gqa=grouped)
    if grouped:
        groups = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scores = torch.matmul(q, k.transpose(-2, -1)) * (q.shape[-1] ** -0.5 if scale is None else scale)
    if is_causal:  # the newest t of n positions, as attention_mask builds it for a cache
        t, n = scores.shape[-2:]
        attn_mask, _ = attention_mask(None, "causal", t, past=n - t, explicit=True)
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attn_mask, torch.finfo(scores.dtype).min)
    elif attn_mask is not None:
        scores = scores + attn_mask
    return torch.matmul(dropout(scores.softmax(-1), dropout_p), v)


def with_bias(attn_mask: torch.Tensor | None, bias: torch.Tensor) -> torch.Tensor:
    """Fold a bool ``attn_mask`` (True = may attend) into an additive position ``bias`` (1, H, T, K):
    masked entries get the dtype's lowest value, as in the T5 reference, so rows never become NaN."""
    if attn_mask is None:
        return bias
    return bias.masked_fill(~attn_mask, torch.finfo(bias.dtype).min)


class MultiHeadAttention(nn.Module):
    """Self-attention with a fused q/k/v projection, or cross-attention (``cross``) with a query
    projection ``q`` and a fused key/value projection ``kv`` applied to the memory.

    Shapes: x (B, T, D) [, memory (B, S, D)] -> (B, T, D). ``qkv`` holds the query, key and value
    weights stacked as rows [q; k; v] of a ((H + 2·Hkv)·Dh, D) matrix; ``kv`` the rows [k; v]
    (2·Hkv·Dh, D). With ``num_kv_heads`` Hkv < H, grouped-query attention (Ainslie et al. 2023):
    query heads h·H/Hkv .. (h+1)·H/Hkv - 1 share key/value head h (Hkv = 1: multi-query attention,
    Shazeer 2019); the cache keeps the Hkv heads.

    Args:
        dim: model width D.
        num_heads: H.
        num_kv_heads: Hkv, a divisor of H (None = H: standard multi-head attention).
        head_dim: Dh (None = D / H; T5 v1.1 has H·Dh != D).
        dropout: attention-probability dropout (active in training only).
        bias: biases on the projections.
        out_bias: bias on the output projection (None = ``bias``; Qwen2 has q/k/v biases and none here).
        scale: factor on q·k (None = Dh^-0.5; T5 uses 1.0, its init absorbs the scaling).
        rotary: a factory ``rotary(Dh) -> module`` of a positional scheme applied to q and k of
            self-attention, ``module(q, k, position_ids) -> (q, k)`` (e.g. :class:`uer.layers.rotary.RotaryEmbedding`);
            None = no such scheme. Cross-attention ignores it.
        position_bias: a factory of this layer's own additive bias of self-attention,
            ``module(T, past) -> (1, H, T, K)`` (BEiT's per-layer 2D bias,
            :class:`uer.layers.relative_position_2d.RelativePositionBias2d`); None = none.
        cross: cross-attention to a memory instead of self-attention.

    Raises:
        ValueError: ``head_dim`` not given and ``dim`` not divisible by ``num_heads``, or
            ``num_heads`` not divisible by ``num_kv_heads``.
    """

    def __init__(self, *, dim: int, num_heads: int, num_kv_heads: int | None = None, head_dim: int | None = None,
                 dropout: float = 0.0, bias: bool = True, out_bias: bool | None = None, scale: float | None = None,
                 rotary: Callable[[int], nn.Module] | None = None, cross: bool = False,
                 position_bias: Callable[[], nn.Module] | None = None):
        super().__init__()
        if head_dim is None:
            if dim % num_heads:
                raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
            head_dim = dim // num_heads
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if num_kv_heads < 1 or num_heads % num_kv_heads:
            raise ValueError(f"num_heads {num_heads} is not divisible by num_kv_heads {num_kv_heads}")
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.dropout = dropout
        self.scale = scale
        self.cross = cross
        inner, kv_inner = num_heads * head_dim, num_kv_heads * head_dim
        if cross:
            self.q = nn.Linear(dim, inner, bias=bias)
            self.kv = nn.Linear(dim, 2 * kv_inner, bias=bias)
        else:
            self.qkv = nn.Linear(dim, inner + 2 * kv_inner, bias=bias)
        self.out = nn.Linear(inner, dim, bias=bias if out_bias is None else out_bias)
        self.rotary = rotary(head_dim) if rotary is not None and not cross else None
        self.position_bias = position_bias() if position_bias is not None and not cross else None

    def _heads(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        """(B, T, heads·Dh) -> (B, heads, T, Dh)."""
        b, t, _ = x.shape
        return x.view(b, t, heads, self.head_dim).transpose(1, 2)

    def _kv_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, 2·Hkv·Dh) rows [k; v] -> k, v each (B, Hkv, S, Dh)."""
        k, v = x.split(self.num_kv_heads * self.head_dim, dim=-1)
        return self._heads(k, self.num_kv_heads), self._heads(v, self.num_kv_heads)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False, *,
                memory: torch.Tensor | None = None, cache: KVCache | None = None, index: int = 0,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, D); ``attn_mask``/``is_causal`` from :func:`attention_mask` (a float mask is
        added to the scores: a position bias); ``memory`` (B, S, D) for cross-attention. With a
        ``cache``, self-attention appends this step's keys/values to layer ``index``'s and attends to
        all of them; cross-attention computes the memory's keys/values once and reuses them.
        ``position_ids`` (B, T) or (1, T) int64 number the queries for ``rotary`` (None = past ..
        past + T - 1, past = the positions already in layer ``index``'s cache)."""
        b, t, _ = x.shape
        if self.cross:
            q = self._heads(self.q(x), self.num_heads)
            kv = cache.cross(index) if cache is not None else None
            if kv is None:
                kv = self._kv_heads(self.kv(memory))
                if cache is not None:
                    cache.set_cross(index, *kv)
            k, v = kv
        else:
            q, kv = self.qkv(x).split((self.num_heads * self.head_dim, 2 * self.num_kv_heads * self.head_dim), -1)
            q, (k, v) = self._heads(q, self.num_heads), self._kv_heads(kv)
            if self.rotary is not None:
                if position_ids is None:
                    past = cache.past(index) if cache is not None else 0
                    position_ids = torch.arange(past, past + t, device=x.device)[None]
                q, k = self.rotary(q, k, position_ids)
            if cache is not None:
                k, v = cache.update(index, k, v)
            if self.position_bias is not None:
                bias = self.position_bias(t, k.shape[2] - t).to(q.dtype)
                float_mask = attn_mask is not None and attn_mask.dtype != torch.bool
                attn_mask = attn_mask + bias if float_mask else with_bias(attn_mask, bias)
        h = attend(q, k, v, attn_mask, is_causal, self.dropout if self.training else 0.0, self.scale)
        return self.out(h.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim))
