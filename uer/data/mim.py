"""Blockwise masking of image patches for masked image modeling (BEiT, Bao et al. 2022, §2.5 and
Algorithm 1; the ``MaskingGenerator`` of the reference ``unilm/beit/masking_generator.py``)."""
from __future__ import annotations

import math

import numpy as np
import torch

from uer.data.images import ImageCollator
from uer.errors import UerError

REFERENCE_PATCHES = 196
"""Patches of the 14x14 grid BEiT's block sizes were chosen for (224x224 images in 16x16 patches)."""
REFERENCE_MIN_BLOCK = 16
"""BEiT's smallest block (patches) on that grid."""


def blockwise_mask(rng: np.random.Generator, height: int, width: int, num_masked: int, min_block: int,
                   min_aspect: float = 0.3) -> np.ndarray:
    """Mask blocks of patches until ``num_masked`` are masked (or a block can no longer be placed).

    Each block has a random area in [``min_block``, patches still to mask] and a log-uniform aspect
    ratio in [``min_aspect``, 1 / ``min_aspect``]; a block is kept when it masks at least one new
    patch and no more than still needed (up to 10 tries per block), as in BEiT's Algorithm 1.

    Args:
        rng: the sample's generator (all draws come from it).
        height, width: the patch grid.
        num_masked: patches to mask (BEiT: 75 of 196, ~40%).
        min_block: the smallest block area in patches (BEiT: 16 on 14x14).
        min_aspect: the smallest aspect ratio (BEiT: 0.3).

    Returns:
        (height · width,) bool, row-major, True = masked.
    """
    mask = np.zeros((height, width), dtype=bool)
    log_aspect = (math.log(min_aspect), -math.log(min_aspect))
    count = 0
    while count < num_masked:
        room = num_masked - count
        added = 0
        for _ in range(10):
            area = min_block + (room - min_block) * rng.random()  # as Python's uniform: room may be < min_block
            aspect = math.exp(rng.uniform(*log_aspect))
            h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if w < width and h < height:
                top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
                new = h * w - int(mask[top:top + h, left:left + w].sum())
                if 0 < new <= room:
                    mask[top:top + h, left:left + w] = True
                    added = new
                    break
        if added == 0:
            break
        count += added
    return mask.reshape(-1)


class MaskedImageCollator(ImageCollator):
    """:class:`~uer.data.images.ImageCollator`'s ``pixel_values`` and ``labels`` plus
    ``bool_masked_pos`` (B, P) bool, a blockwise mask (:func:`blockwise_mask`) drawn per image from
    its own generator, so it depends on (seed, epoch, sample index) alone.

    Args:
        image_size, channels: as for :class:`~uer.data.images.ImageCollator`.
        patch_size: the model's patch size; the grid is (image_size / patch_size)².
        mask_ratio: fraction of the patches to mask (BEiT: 0.4).
        min_block: smallest block in patches; None = BEiT's 16 scaled to the grid (16 · P / 196,
            at least 1), so an 8x8 grid gets blocks of 5 patches and more.
        min_aspect: smallest block aspect ratio (BEiT: 0.3).

    Raises:
        UerError: ``mask_ratio`` outside (0, 1), a ``min_block`` < 1, ``min_aspect`` outside (0, 1],
            or an image size that is not a multiple of the patch size.
    """

    def __init__(self, image_size: int, patch_size: int, channels: int = 3, mask_ratio: float = 0.4,
                 min_block: int | None = None, min_aspect: float = 0.3):
        super().__init__(image_size, channels)
        if not 0 < mask_ratio < 1:
            raise UerError(f"data.mask_ratio={mask_ratio}: must be between 0 and 1")
        if not 0 < min_aspect <= 1:
            raise UerError(f"data.min_aspect={min_aspect}: must be in (0, 1]")
        if patch_size < 1 or image_size % patch_size:
            raise UerError(f"data.patch_size={patch_size}: must divide data.image_size={image_size}")
        self.grid = image_size // patch_size
        patches = self.grid ** 2
        if min_block is None:
            min_block = max(1, round(REFERENCE_MIN_BLOCK * patches / REFERENCE_PATCHES))
        if min_block < 1:
            raise UerError(f"data.min_block={min_block}: must be >= 1 (or null)")
        self.num_masked = max(1, round(mask_ratio * patches))
        self.min_block, self.min_aspect = min_block, min_aspect

    def __call__(self, rows: dict[str, list], rngs: list[np.random.Generator]) -> dict[str, torch.Tensor]:
        batch = super().__call__(rows, rngs)
        masks = [blockwise_mask(rng, self.grid, self.grid, self.num_masked, self.min_block, self.min_aspect)
                 for rng in rngs]
        batch["bool_masked_pos"] = torch.from_numpy(np.stack(masks))
        return batch
