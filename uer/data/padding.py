"""Padding ragged token lists into batch arrays."""
from __future__ import annotations

import numpy as np


def pad(rows: list[list[int]], value: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Right-pad ``rows`` to the longest one.

    Returns:
        ``(ids, mask)``: ids (B, S) int64; mask (B, S) int64 with 1 = real token, or None when no
        row needed padding (so the model can take SDPA's unmasked fast path).
    """
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    width = int(lengths.max()) if len(rows) else 0
    ids = np.full((len(rows), width), value, dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
    if (lengths == width).all():
        return ids, None
    return ids, (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
