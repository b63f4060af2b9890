"""Key/value cache for incremental decoding: each new token costs one position, not the sequence."""
from __future__ import annotations

import torch


class KVCache:
    """Per-layer attention keys and values kept between decoding steps.

    ``self_kv[i]``: layer i's self-attention (k, v), each (B, Hkv, T, Dh), growing by the new positions
    at every step; ``cross_kv[i]``: layer i's cross-attention (k, v) of the encoder memory, each
    (B, Hkv, S, Dh), computed at the first step and reused. Attention layers fill it (see
    :class:`uer.layers.attention.MultiHeadAttention`); a stack reads :attr:`length` before its
    first layer to number the new positions. Create an empty one per generation call.
    """

    def __init__(self):
        self.self_kv: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        self.cross_kv: list[tuple[torch.Tensor, torch.Tensor] | None] = []

    @property
    def length(self) -> int:
        """Number of cached positions (0 when empty)."""
        return self.past(0)

    def past(self, index: int) -> int:
        """Number of positions in layer ``index``'s self-attention cache (0 before its first step)."""
        kv = self.self_kv[index] if index < len(self.self_kv) else None
        return 0 if kv is None else kv[0].shape[2]

    @staticmethod
    def _slot(store: list, index: int) -> None:
        while len(store) <= index:
            store.append(None)

    def update(self, index: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append the new positions' k, v (B, Hkv, T_new, Dh) to layer ``index``; return all (B, Hkv, T, Dh)."""
        self._slot(self.self_kv, index)
        if self.self_kv[index] is not None:
            past_k, past_v = self.self_kv[index]
            k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        self.self_kv[index] = (k, v)
        return k, v

    def cross(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Layer ``index``'s cached memory keys/values, or None before the first step."""
        return self.cross_kv[index] if index < len(self.cross_kv) else None

    def set_cross(self, index: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store layer ``index``'s memory keys/values (B, Hkv, S, Dh)."""
        self._slot(self.cross_kv, index)
        self.cross_kv[index] = (k, v)

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (B',) int64, in that order (beam search: the surviving beams)."""
        for store in (self.self_kv, self.cross_kv):
            for i, kv in enumerate(store):
                if kv is not None:
                    store[i] = (kv[0].index_select(0, index), kv[1].index_select(0, index))
