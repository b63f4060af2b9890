"""Contrastive language-image pretraining: CLIP's symmetric InfoNCE objective (Radford et al. 2021,
Fig. 3), with the features of every data-parallel rank in each rank's similarity matrix."""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_gather
from torch.nn import functional as F

from uer.layers.streams import Stream, TwoStreams
from uer.targets.output import TargetOutput, accuracy

TEXT_POOLINGS = ("last", "eos", "argmax")
"""Where a caption's feature is read: ``last`` real token (by the mask: the end token of a right-padded
caption), first ``eos`` token (Hugging Face ``CLIPTextTransformer`` with ``eos_token_id != 2``), or
``argmax`` of the ids (its legacy rule for ``eos_token_id == 2``: the end token has the largest id)."""


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """(b, E) on each of N ranks -> (N·b, E), ranks in order, through an all-gather whose backward
    sums the gradients of every rank's copy into the owner (``torch.distributed.nn.functional``), so
    a loss over the gathered features trains like one process with the whole batch. Without an
    initialized process group (or with one process) ``x`` itself."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return torch.cat(all_gather(x), dim=0)


class ClrTarget(nn.Module):
    """``forward(hidden: TwoStreams, batch) -> TargetOutput``: CLIP's contrastive loss.

    The text stream (first) is pooled at one token per caption (:data:`TEXT_POOLINGS`), the image
    stream (second) at its class position 0; each is projected without bias to the shared space of
    width E and L2-normalized: t, v (b, E). With N ranks (while training, ``gather``) the features of
    all ranks are gathered with gradients, so the logits are ``s · v tᵀ`` (b, N·b) for this rank's
    images against every caption and ``s · t vᵀ`` for its captions, s = exp(min(logit_scale, ln 100)).
    ``loss_sum`` = Σ over this rank's pairs of (CE(image -> its caption) + CE(caption -> its image)) / 2;
    the trainer divides by the N·b pairs of the step, which gives the loss and gradients of one
    process with the whole batch. Held-out batches (not training) are scored within the rank's batch.

    Parameters: ``text_projection.weight`` (E, D_text), ``visual_projection.weight`` (E, D_vision),
    ``logit_scale`` () — named as in Hugging Face's ``CLIPModel``. Metrics ``i2t_acc`` / ``t2i_acc``:
    the share of images (captions) whose own caption (image) scores highest. ``logits['clr']``:
    image-to-text logits (b, N·b).

    Args:
        text_dim, vision_dim: widths of the text and image streams.
        projection_dim: E.
        text_pooling: one of :data:`TEXT_POOLINGS`.
        eos_token_id: the end token's id, for ``text_pooling="eos"``.
        logit_scale_init: initial log of the logit scale, ln(1/0.07) = 2.6592 in CLIP.
        logit_scale_max: the clamp of the log scale in the forward pass, ln 100 as in the reference.
        gather: gather the features of all ranks (with gradients) while training.

    Raises:
        ValueError: an unknown ``text_pooling``, or ``eos`` without ``eos_token_id``; (in forward)
            ``hidden`` is not a :class:`~uer.layers.streams.TwoStreams`.
    """

    def __init__(self, text_dim: int, vision_dim: int, projection_dim: int, text_pooling: str = "last",
                 eos_token_id: int | None = None, logit_scale_init: float = math.log(1 / 0.07),
                 logit_scale_max: float = math.log(100), gather: bool = True):
        super().__init__()
        if text_pooling not in TEXT_POOLINGS:
            raise ValueError(f"unknown text_pooling {text_pooling!r}; choose one of {', '.join(TEXT_POOLINGS)}")
        if text_pooling == "eos" and eos_token_id is None:
            raise ValueError("text_pooling=eos needs eos_token_id")
        self.text_pooling, self.eos_token_id = text_pooling, eos_token_id
        self.logit_scale_max, self.gather = logit_scale_max, gather
        self.text_projection = nn.Linear(text_dim, projection_dim, bias=False)
        self.visual_projection = nn.Linear(vision_dim, projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale_init)))

    def init_weights(self, std: float) -> None:
        """Projections normal(0, width^-0.5) as in the reference (CLIP's ``initialize_parameters``);
        ``logit_scale`` keeps ``logit_scale_init``. ``std`` is unused."""
        for proj in (self.text_projection, self.visual_projection):
            nn.init.normal_(proj.weight, std=proj.in_features ** -0.5)

    def num_items(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Number of image-caption pairs in the batch (scalar)."""
        return torch.tensor(batch["pixel_values"].shape[0], device=batch["pixel_values"].device)

    def text_features(self, stream: Stream, input_ids: torch.Tensor) -> torch.Tensor:
        """Caption hidden states (B, S, D_text) with their mask and ids (B, S) -> unit features (B, E)."""
        if self.text_pooling == "eos":
            index = (input_ids == self.eos_token_id).int().argmax(-1)
        elif self.text_pooling == "argmax":
            index = input_ids.argmax(-1)
        elif stream.mask is None:
            index = torch.full_like(input_ids[:, 0], stream.x.shape[1] - 1)
        else:
            index = stream.mask.long().sum(-1) - 1
        pooled = stream.x[torch.arange(stream.x.shape[0], device=stream.x.device), index]
        return F.normalize(self.text_projection(pooled).float(), dim=-1)

    def image_features(self, stream: Stream) -> torch.Tensor:
        """Image hidden states (B, S, D_vision), class position first -> unit features (B, E)."""
        return F.normalize(self.visual_projection(stream.x[:, 0]).float(), dim=-1)

    def scale(self) -> torch.Tensor:
        """The logit scale s = exp(min(logit_scale, logit_scale_max)) (scalar, float32)."""
        return self.logit_scale.float().clamp(max=self.logit_scale_max).exp()

    def forward(self, hidden: TwoStreams, batch: dict[str, torch.Tensor]) -> TargetOutput:
        if not isinstance(hidden, TwoStreams):
            raise TypeError(f"the clr target contrasts two streams; got {type(hidden).__name__} "
                            "(use a dual embedding and a dual encoder)")
        text = self.text_features(hidden.first, batch["input_ids"])
        image = self.image_features(hidden.second)
        everyone = self.gather and self.training
        all_text = gather_with_grad(text) if everyone else text
        all_image = gather_with_grad(image) if everyone else image
        offset = dist.get_rank() * text.shape[0] if all_text is not text else 0
        labels = torch.arange(offset, offset + text.shape[0], device=text.device)
        logits_per_image = self.scale() * image @ all_text.T  # (b, N·b)
        logits_per_text = self.scale() * text @ all_image.T
        loss_sum = (F.cross_entropy(logits_per_image, labels, reduction="sum")
                    + F.cross_entropy(logits_per_text, labels, reduction="sum")) / 2
        metrics = {"i2t_acc": accuracy(logits_per_image.detach(), labels),
                   "t2i_acc": accuracy(logits_per_text.detach(), labels)}
        return TargetOutput.single("clr", loss_sum, self.num_items(batch), logits_per_image, metrics)
