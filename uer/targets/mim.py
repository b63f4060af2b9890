"""Masked image modeling heads: BEiT's prediction of the masked patches' visual tokens (Bao et al.
2022, §2.3) and SimMIM's L1 regression of their pixels (Xie et al. 2022, §3)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from uer.layers.norms import make_norm
from uer.layers.visual_tokenizer import KMeansTokenizer, normalize_patches, patchify
from uer.targets.cross_entropy import summed_cross_entropy
from uer.targets.output import TargetOutput, accuracy

MASK_FIELD = "bool_masked_pos"
"""Batch key of the masked patches, (B, P) bool (Hugging Face's name)."""


def masked_patches(hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The hidden states of the masked patches: ``hidden`` (B, S, D) whose last P positions are the
    patches (a leading [CLS] is skipped) -> ((N, D), the (B, P) bool mask), N masked patches in
    row-major order."""
    masked = batch[MASK_FIELD].bool()
    return hidden[:, -masked.shape[1]:][masked], masked


class MimTarget(nn.Module):
    """BEiT's masked image modeling: predict the visual token of every masked patch (cross-entropy
    over a K-entry codebook). The tokens come from ``tokenizer``, a :class:`KMeansTokenizer` fitted
    to the training images by :meth:`fit_to_data` before training (BEiT used a pretrained dVAE).

    Head: norm, then a linear map D -> K (Hugging Face's ``BeitForMaskedImageModeling``: ``layernorm``,
    ``lm_head``). ``forward(hidden: (B, 1 + P, D), batch) -> TargetOutput``; reads ``pixel_values``
    and ``bool_masked_pos``; ``logits['mim']``: (N, K) for the N masked patches.

    Args:
        dim: D.  patch_size, channels: of the images.  codebook_size: K.
        norm, norm_eps: the head's norm.
        num_fit_images: training images the codebook is fitted on.
        num_iterations, seed: of the k-means fit.
    """

    def __init__(self, dim: int, patch_size: int, channels: int, codebook_size: int, norm: str = "layernorm",
                 norm_eps: float = 1e-12, num_fit_images: int = 256, num_iterations: int = 20, seed: int = 0):
        super().__init__()
        self.norm = make_norm(norm, dim, norm_eps)
        self.head = nn.Linear(dim, codebook_size)
        self.tokenizer = KMeansTokenizer(patch_size, channels, codebook_size, num_iterations, seed)
        self.num_fit_images = num_fit_images

    @property
    def fitted(self) -> bool:
        """True once the tokenizer's codebook is fitted (:meth:`fit_to_data` or a checkpoint)."""
        return self.tokenizer.fitted

    def fit_to_data(self, batch: dict[str, torch.Tensor]) -> None:
        """Fit the tokenizer's codebook to ``batch['pixel_values']`` (``num_fit_images`` training images)."""
        self.tokenizer.fit(batch["pixel_values"])

    def num_items(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Number of masked patches (scalar)."""
        return batch[MASK_FIELD].sum()

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> TargetOutput:
        h, masked = masked_patches(hidden, batch)
        tokens = self.tokenizer(batch["pixel_values"])[masked]  # (N,)
        logits = self.head(self.norm(h))
        return TargetOutput.single("mim", summed_cross_entropy(logits, tokens), masked.sum(), logits,
                                   {"acc": accuracy(logits, tokens)})


class SimMimTarget(nn.Module):
    """SimMIM: a linear map D -> p·p·C regresses the pixels of every masked patch; the loss of a patch
    is the mean absolute error over its p·p·C values (the collator's normalized pixels, or each
    patch normalized by its own mean and deviation with ``normalize_patches``, as MAE's ``norm_pix_loss``).

    ``forward(hidden: (B, 1 + P, D), batch) -> TargetOutput``; reads ``pixel_values`` and
    ``bool_masked_pos``; ``logits['simmim']``: (N, p·p·C) predicted pixels of the N masked patches.

    Args:
        dim: D.  patch_size, channels: of the images.
        normalize_targets: regress per-patch normalized pixels.
    """

    def __init__(self, dim: int, patch_size: int, channels: int, normalize_targets: bool = False):
        super().__init__()
        self.patch_size = patch_size
        self.normalize_targets = normalize_targets
        self.head = nn.Linear(dim, patch_size * patch_size * channels)

    def num_items(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Number of masked patches (scalar)."""
        return batch[MASK_FIELD].sum()

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> TargetOutput:
        h, masked = masked_patches(hidden, batch)
        target = patchify(batch["pixel_values"].float(), self.patch_size)[masked]  # (N, p·p·C)
        if self.normalize_targets:
            target = normalize_patches(target)
        predicted = self.head(h)
        loss_sum = F.l1_loss(predicted.float(), target, reduction="none").mean(-1).sum()
        return TargetOutput.single("simmim", loss_sum, masked.sum(), predicted)
