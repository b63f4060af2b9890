"""An image tokenizer fitted to the training images: k-means (Lloyd 1982) over normalized patches,
standing in for BEiT's pretrained dVAE tokenizer (Bao et al. 2022, §2.2; Ramesh et al. 2021), which
cannot be downloaded here. A patch's visual token is the index of its nearest centroid; the codebook
is a buffer, so it travels in the checkpoint with the weights that learned to predict it."""
from __future__ import annotations

import torch
from torch import nn

PATCH_EPS = 1e-6
"""Added to a patch's variance before dividing by its standard deviation (MAE's ``norm_pix_loss``)."""


def patchify(pixels: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, P, p·p·C): non-overlapping p×p patches in row-major grid order (the order
    of the patch embedding's convolution), each flattened (row, column, channel).

    Raises:
        ValueError: H or W not a multiple of ``patch_size``.
    """
    b, c, h, w = pixels.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"images of {h}x{w} pixels do not split into {patch_size}x{patch_size} patches")
    x = pixels.reshape(b, c, h // patch_size, patch_size, w // patch_size, patch_size)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch_size) * (w // patch_size), -1)


def normalize_patches(patches: torch.Tensor) -> torch.Tensor:
    """(..., N) -> (..., N): each patch minus its mean, over sqrt(its variance + 1e-6), so a token
    describes a patch's shape, not its brightness (a uniform patch becomes all zeros)."""
    mean = patches.mean(-1, keepdim=True)
    var = patches.var(-1, keepdim=True, unbiased=False)
    return (patches - mean) / (var + PATCH_EPS).sqrt()


class KMeansTokenizer(nn.Module):
    """Visual tokens of image patches: ``forward(pixels (B, C, H, W)) -> (B, P) int64`` in [0, K).

    Buffer ``codebook`` (K, p·p·C) float32: the centroids of :func:`normalize_patches`'d patches,
    zero until :meth:`fit` (``fitted`` is then True).

    Args:
        patch_size: p.  channels: C.  codebook_size: K (BEiT's dVAE: 8192).
        num_iterations: Lloyd iterations of :meth:`fit`.
        seed: seeds the choice of initial centroids.
    """

    def __init__(self, patch_size: int, channels: int, codebook_size: int, num_iterations: int = 20, seed: int = 0):
        super().__init__()
        self.patch_size = patch_size
        self.num_iterations = num_iterations
        self.seed = seed
        self.register_buffer("codebook", torch.zeros(codebook_size, patch_size * patch_size * channels))

    def init_weights(self, std: float) -> None:
        """Nothing to draw: the codebook comes from :meth:`fit` (or a checkpoint)."""

    @property
    def fitted(self) -> bool:
        """True once the codebook holds centroids (from :meth:`fit` or a checkpoint)."""
        return bool(self.codebook.abs().sum() > 0)

    @torch.no_grad()
    def fit(self, pixels: torch.Tensor) -> None:
        """Fit the codebook to the patches of ``pixels`` (B, C, H, W): K distinct patches chosen by a
        generator seeded with ``seed``, then ``num_iterations`` Lloyd steps (an empty cluster keeps
        its centroid). Deterministic for given pixels, so every process of a run fits the same one.

        Raises:
            ValueError: fewer distinct patches than K.
        """
        points = normalize_patches(patchify(pixels.float().cpu(), self.patch_size)).reshape(-1, self.codebook.shape[1])
        distinct = torch.unique(points, dim=0)
        k = self.codebook.shape[0]
        if len(distinct) < k:
            raise ValueError(f"the fitting images have {len(distinct)} distinct patches, fewer than the "
                             f"codebook_size {k}; use more images (num_fit_images) or a smaller codebook")
        generator = torch.Generator().manual_seed(self.seed)
        centroids = distinct[torch.randperm(len(distinct), generator=generator)[:k]].clone()
        for _ in range(self.num_iterations):
            assign = self._nearest(points, centroids)
            sums = torch.zeros_like(centroids).index_add_(0, assign, points)
            counts = torch.bincount(assign, minlength=k).unsqueeze(1)
            centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
        self.codebook.copy_(centroids.to(self.codebook.device))

    @staticmethod
    def _nearest(points: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
        """(N, d), (K, d) -> (N,) index of the nearest centroid (squared Euclidean distance)."""
        scores = points @ centroids.T - 0.5 * (centroids * centroids).sum(1)
        return scores.argmax(1)

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, P) int64 visual tokens.

        Raises:
            ValueError: the codebook was never fitted.
        """
        if not self.fitted:
            raise ValueError("the visual tokenizer's codebook is not fitted (uer-pretrain fits it to the "
                             "training images before the first step)")
        with torch.autocast(pixels.device.type, enabled=False):  # fp32 distances: the same tokens under bf16
            patches = normalize_patches(patchify(pixels.float(), self.patch_size))
            b, p, d = patches.shape
            return self._nearest(patches.reshape(-1, d), self.codebook.float()).reshape(b, p)
