"""BEiT's 2D relative position bias (Bao et al. 2022, §2.6 after Swin, Liu et al. 2021): a learned
scalar per head for every (Δrow, Δcolumn) between two patches of the grid, plus three entries for
[CLS]→patch, patch→[CLS] and [CLS]→[CLS]; added to the attention scores, either in every layer
(its own table) or once per stack (one shared table). Hugging Face: ``BeitRelativePositionBias``."""
from __future__ import annotations

import torch
from torch import nn


def relative_position_index(height: int, width: int) -> torch.Tensor:
    """(1 + h·w, 1 + h·w) int64 table rows for a [CLS] + h×w row-major patch sequence: entry (i, j)
    of two patches is (Δr + h - 1)·(2w - 1) + (Δc + w - 1) with Δ = query - key; then the rows
    (2h - 1)(2w - 1) + 0, + 1, + 2 for [CLS]→patch, patch→[CLS], [CLS]→[CLS] (the reference's order)."""
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    coords = torch.stack([rows.flatten(), cols.flatten()])  # (2, h·w)
    delta = coords[:, :, None] - coords[:, None, :]  # (2, h·w, h·w)
    distances = (2 * height - 1) * (2 * width - 1)
    index = torch.zeros(height * width + 1, height * width + 1, dtype=torch.int64)
    index[1:, 1:] = (delta[0] + height - 1) * (2 * width - 1) + delta[1] + width - 1
    index[0, :] = distances
    index[:, 0] = distances + 1
    index[0, 0] = distances + 2
    return index


class RelativePositionBias2d(nn.Module):
    """``forward(length, past=0) -> (1, H, length, length)`` bias for a [CLS] + grid² patch sequence.

    Parameter ``table`` ((2g - 1)² + 3, H), zeros at first (as the reference). The call signature is
    that of :class:`uer.layers.relative_position.RelativePositionBias`, so a stack uses either.

    Args:
        num_heads: H.
        image_size, patch_size: the grid has g = image_size / patch_size patches per side.

    Raises:
        ValueError: ``image_size`` not a multiple of ``patch_size``; (in forward) ``length`` is not 1 + g², or ``past`` > 0 (no incremental decoding
            over images).
    """

    def __init__(self, num_heads: int, image_size: int, patch_size: int):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.grid = grid = image_size // patch_size
        self.table = nn.Parameter(torch.zeros((2 * grid - 1) ** 2 + 3, num_heads))
        self.register_buffer("index", relative_position_index(grid, grid), persistent=False)

    def init_weights(self, std: float) -> None:
        """Zeros, as the reference: the bias starts neutral."""
        nn.init.zeros_(self.table)

    def forward(self, length: int, past: int = 0) -> torch.Tensor:
        if past or length != self.grid ** 2 + 1:
            raise ValueError(f"the 2D relative position bias covers [CLS] + {self.grid}x{self.grid} patches "
                             f"({self.grid ** 2 + 1} positions), not {length} after {past} cached")
        return self.table[self.index].permute(2, 0, 1).unsqueeze(0)
