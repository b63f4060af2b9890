"""Patch embedding of the Vision Transformer (Dosovitskiy et al. 2021)."""
from __future__ import annotations

import torch
from torch import nn


class PatchEmbedding(nn.Module):
    """Cuts ``pixel_values`` (B, C, H, W) into non-overlapping P×P patches, projects each to D,
    prepends a learned [CLS] vector and adds learned position vectors: -> (B, 1 + (H/P)·(W/P), D).

    The position table belongs here, not to a separate part, because its length is fixed by the
    image and patch sizes (as in the reference ViT and Hugging Face's ``ViTEmbeddings``).

    It starts a new sequence, so it ignores the token mask it is given and returns the mask of the
    patches: None when the batch has no ``mask_field`` (no image is padded), else (B, 1 + P') bool
    with a patch real when its top-left pixel is (nearest-neighbour downsampling of the pixel mask,
    as ViLT's ``pixel_mask``, Kim et al. 2021) and the [CLS] position always real.

    Args:
        image_size: H = W of the input images.
        patch_size: P.
        channels: C.
        dim: D.
        cls_token: prepend the classification token.
        position: add learned position embeddings.
        mask_field: batch key of an optional pixel mask (B, H, W), 1 = real pixel.
        bias: the patch projection has a bias (ViT, BEiT); CLIP's has none.
        mask_token: a learned [MASK] vector replaces the patches the batch's ``bool_masked_pos``
            (B, P) bool marks, before the [CLS] vector and the positions are added (masked image
            modeling: BEiT, Bao et al. 2022; SimMIM, Xie et al. 2022). Parameter ``mask_token`` (1, 1, D).

    Raises:
        ValueError: ``image_size`` is not a multiple of ``patch_size``; (in forward) the input image
            has another size, or ``x`` is given (the patch embedding must be the first part).
    """

    def __init__(self, image_size: int, patch_size: int, channels: int, dim: int, cls_token: bool = True,
                 position: bool = True, mask_field: str = "pixel_mask", bias: bool = True,
                 mask_token: bool = False):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.image_size = image_size
        self.patch_size = patch_size
        self.mask_field = mask_field
        self.num_patches = (image_size // patch_size) ** 2
        self.proj = nn.Conv2d(channels, dim, kernel_size=patch_size, stride=patch_size, bias=bias)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if cls_token else None
        if self.cls is not None:
            nn.init.normal_(self.cls, std=0.02)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim)) if mask_token else None
        if self.mask_token is not None:
            nn.init.normal_(self.mask_token, std=0.02)
        n = self.num_patches + (1 if cls_token else 0)
        self.position = nn.Parameter(torch.empty(1, n, dim)) if position else None
        if self.position is not None:
            nn.init.normal_(self.position, std=0.02)

    def forward(self, batch: dict[str, torch.Tensor], x: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (patches (B, S', D), their mask (B, S') bool or None); the incoming ``mask`` is unused."""
        if x is not None:
            raise ValueError("the patch embedding starts a sequence: list it first among the embedding parts")
        pixels = batch["pixel_values"]
        if pixels.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"pixel_values are {tuple(pixels.shape[-2:])}, the patch embedding expects "
                             f"{self.image_size}x{self.image_size}")
        x = self.proj(pixels.to(self.proj.weight.dtype)).flatten(2).transpose(1, 2)  # (B, P, D)
        masked = batch.get("bool_masked_pos")
        if self.mask_token is not None and masked is not None:
            x = torch.where(masked.unsqueeze(-1).bool(), self.mask_token.to(x.dtype), x)
        pixel_mask = batch.get(self.mask_field)
        mask = None if pixel_mask is None else pixel_mask[:, ::self.patch_size, ::self.patch_size].flatten(1).bool()
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
            if mask is not None:
                mask = torch.cat([mask.new_ones(mask.shape[0], 1), mask], dim=1)
        return (x if self.position is None else x + self.position), mask
