"""Multi-head attention through ``torch.nn.functional.scaled_dot_product_attention`` (Vaswani et al.
2017): self-attention with a fused q/k/v projection and cross-attention to an encoder memory, and the
mask forms SDPA expects (fully visible, causal, prefix; with or without a key/value cache)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from uer.layers.dropout import dropout
from uer.layers.kv_cache import KVCache

PATTERNS = ("fully_visible", "causal", "prefix")


def attention_mask(mask: torch.Tensor | None, pattern: str, length: int, past: int = 0,
                   prefix: torch.Tensor | None = None, explicit: bool = False
                   ) -> tuple[torch.Tensor | None, bool]:
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
    if pattern == "fully_visible" or (pattern == "causal" and length == 1):
        return keys, False
    if pattern == "causal" and keys is None and past == 0 and not explicit:
        return None, True
    device = mask.device if mask is not None else (prefix.device if prefix is not None else None)
    q = torch.arange(past, past + length, device=device)[:, None]
    visible = torch.arange(past + length, device=device)[None, :] <= q  # (length, K)
    if pattern == "prefix":
        visible = visible | prefix[:, None, None, :].bool()
    return visible if keys is None else keys & visible, False


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
           is_causal: bool = False, dropout_p: float = 0.0, scale: float | None = None) -> torch.Tensor:
    """``torch.nn.functional.scaled_dot_product_attention`` (same arguments and result: q (B, H, T, Dh),
    k and v (B, H, K, Dh) -> (B, H, T, Dh)), except on CPU with ``dropout_p`` > 0.

    There SDPA falls back to its math path and draws the probability dropout with ``bernoulli_``;
    this computes the same math path (softmax(q·kᵀ·scale + mask), dropout, ·v) with
    :func:`uer.layers.dropout.dropout`'s cheaper mask. Masked scores get the dtype's lowest value
    rather than -inf, so a row with no visible key averages the values instead of becoming NaN.
    """
    if dropout_p == 0 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal,
                                              dropout_p=dropout_p, scale=scale)
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
    weights stacked as rows [q; k; v] of a (3·H·Dh, D) matrix; ``kv`` the rows [k; v].

    Args:
        dim: model width D.
        num_heads: H.
        dropout: attention-probability dropout (active in training only).
        bias: biases on the projections.
        head_dim: Dh (default D / H; T5 v1.1 has H·Dh != D).
        scale: factor on q·k (default Dh^-0.5; T5 uses 1.0, its init absorbs the scaling).
        cross: cross-attention to a memory instead of self-attention.

    Raises:
        ValueError: ``head_dim`` not given and ``dim`` not divisible by ``num_heads``.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 head_dim: int | None = None, scale: float | None = None, cross: bool = False):
        super().__init__()
        if head_dim is None:
            if dim % num_heads:
                raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
            head_dim = dim // num_heads
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.dropout = dropout
        self.scale = scale
        self.cross = cross
        inner = num_heads * head_dim
        if cross:
            self.q = nn.Linear(dim, inner, bias=bias)
            self.kv = nn.Linear(dim, 2 * inner, bias=bias)
        else:
            self.qkv = nn.Linear(dim, 3 * inner, bias=bias)
        self.out = nn.Linear(inner, dim, bias=bias)

    def _heads(self, x: torch.Tensor, parts: int) -> torch.Tensor:
        """(B, T, parts·H·Dh) -> (parts, B, H, T, Dh)."""
        b, t, _ = x.shape
        return x.view(b, t, parts, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False,
                memory: torch.Tensor | None = None, cache: KVCache | None = None, index: int = 0) -> torch.Tensor:
        """x: (B, T, D); ``attn_mask``/``is_causal`` from :func:`attention_mask` (a float mask is
        added to the scores: a position bias); ``memory`` (B, S, D) for cross-attention. With a
        ``cache``, self-attention appends this step's keys/values to layer ``index``'s and attends to
        all of them; cross-attention computes the memory's keys/values once and reuses them."""
        b, t, _ = x.shape
        if self.cross:
            (q,) = self._heads(self.q(x), 1)
            kv = cache.cross(index) if cache is not None else None
            if kv is None:
                kv = tuple(self._heads(self.kv(memory), 2))
                if cache is not None:
                    cache.set_cross(index, *kv)
            k, v = kv
        else:
            q, k, v = self._heads(self.qkv(x), 3)
            if cache is not None:
                k, v = cache.update(index, k, v)
        h = attend(q, k, v, attn_mask, is_causal, self.dropout if self.training else 0.0, self.scale)
        return self.out(h.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim))
