"""Evaluation of a contrastive image-text model (CLIP, Radford et al. 2021) on held-out pairs:
zero-shot classification from class prompts (§3.1.2, with an ensemble of prompts per class, §3.1.4)
and image <-> text retrieval recall@k (§3.1.6 reports it on Flickr30k and MSCOCO). Runs during
pretraining as the Trainer's evaluator (``data.evaluator``) and from ``examples/zero_shot.py`` on
any CLIP checkpoint."""
from __future__ import annotations

import contextlib

import torch
from torch.nn import functional as F

from uer.embeddings.dual import batch_view
from uer.errors import UerError
from uer.layers.streams import Stream
from uer.preprocess.image_text import caption_ids, class_prompts
from uer.targets.clr import ClrTarget
from uer.train.assemble import Data

RECALL_AT = (1, 5)


def clr_part(model: torch.nn.Module) -> ClrTarget:
    """The model's :class:`~uer.targets.clr.ClrTarget` (its projections and pooling).

    Raises:
        UerError: the model has none (not a CLIP model).
    """
    for module in model.target.modules():
        if isinstance(module, ClrTarget):
            return module
    raise UerError("the model has no clr target: zero-shot and retrieval need a CLIP model (e.g. +model=clip_tiny)")


def text_features(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Unit caption features (B, E) of ``input_ids``/``attention_mask`` (B, S), through the text tower only."""
    x, mask = model.embedding.first(batch_view(batch, model.embedding.first_prefix))
    return clr_part(model).text_features(Stream(model.encoder.first(x, mask), mask), batch["input_ids"])


def image_features(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Unit image features (B, E) of ``pixel_values`` (B, 3, H, W), through the image tower only."""
    embedding, encoder = model.embedding, model.encoder
    x, mask = (embedding.second or embedding.first)(batch_view(batch, embedding.second_prefix))
    return clr_part(model).image_features(Stream((encoder.second or encoder.first)(x, mask), mask))


def recall_at_k(similarity: torch.Tensor, relevant: torch.Tensor, ks=RECALL_AT) -> dict[int, float]:
    """Share of queries (rows of ``similarity`` (Q, N)) with a relevant item (``relevant`` (Q, N)
    bool) among their k best-scored items, for each k in ``ks`` (capped at N)."""
    order = similarity.argsort(dim=1, descending=True)
    hits = relevant.gather(1, order)
    return {k: hits[:, :k].any(1).float().mean().item() for k in ks}


@torch.no_grad()
def evaluate_contrastive(model: torch.nn.Module, data: Data, tokenizer, device: torch.device,
                         autocast=contextlib.nullcontext) -> dict[str, float]:
    """Retrieval and zero-shot metrics of ``model`` on the rows ``data.indices`` of ``data.rows``
    (collated by ``data.collate`` in batches of ``data.batch_size``).

    ``i2t_r@k`` / ``t2i_r@k``: image -> text and text -> image recall@k over all held-out pairs by
    cosine similarity; a pair counts as relevant to another when their captions are the same token ids
    (the digits' captions repeat: any image of "a handwritten seven" is a right answer to it).
    ``zero_shot_acc``: over the rows with a label (>= 0: the digits), the share whose image is closest
    to the mean prompt feature of its class (:func:`uer.preprocess.image_text.class_prompts`); left
    out when no row has one (a user's pairs, the rendered verses of ``builtin:kjv-rendered``).

    Raises:
        UerError: the model has no clr target.
    """
    clr_part(model)
    model.eval()
    images, texts, captions, labels = [], [], [], []
    for start in range(0, len(data.indices), data.batch_size):
        rows = data.rows[[int(i) for i in data.indices[start:start + data.batch_size]]]
        batch = {k: v.to(device) for k, v in data.collate(rows, []).items()}
        with autocast():
            images.append(image_features(model, batch))
            texts.append(text_features(model, batch))
        captions += [tuple(ids) for ids in rows["input_ids"]]
        labels += rows.get("label", [-1] * len(rows["input_ids"]))
    images, texts = torch.cat(images), torch.cat(texts)
    first_of = {caption: i for i, caption in reversed(list(enumerate(captions)))}
    group = torch.as_tensor([first_of[caption] for caption in captions], device=device)
    relevant = group[:, None] == group[None, :]
    similarity = images @ texts.T
    result = {f"i2t_r@{k}": v for k, v in recall_at_k(similarity, relevant).items()}
    result.update({f"t2i_r@{k}": v for k, v in recall_at_k(similarity.T, relevant).items()})
    labels = torch.as_tensor(labels, device=device)
    if (labels >= 0).any():
        result["zero_shot_acc"] = zero_shot_accuracy(model, images[labels >= 0], labels[labels >= 0],
                                                     data.collate, tokenizer, device, autocast)
    return result


def zero_shot_accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, collate, tokenizer,
                       device: torch.device, autocast=contextlib.nullcontext) -> float:
    """Top-1 accuracy of classifying unit image features (N, E) with true ``labels`` (N,) by the
    nearest class embedding: the renormalized mean of the unit features of the class's prompts."""
    prompts = class_prompts()
    ids = caption_ids(tokenizer, [p for ps in prompts for p in ps], seq_length=10**6)
    batch = {k: v.to(device) for k, v in collate.captions(ids).items()}
    with autocast():
        features = text_features(model, batch)
    classes = F.normalize(features.view(len(prompts), -1, features.shape[-1]).mean(1), dim=-1)
    return ((images @ classes.T).argmax(1) == labels).float().mean().item()


class ContrastiveEvaluator:
    """The Trainer's evaluator of a CLIP run: ``evaluator(trainer) -> {i2t_r@1, i2t_r@5, t2i_r@1,
    t2i_r@5[, zero_shot_acc]}`` by :func:`evaluate_contrastive` on the held-out rows, with the
    trainer's unwrapped model, device and autocast. Named by ``data.evaluator`` (conf/data/image_text.yaml).

    Args:
        data: the held-out rows, their collator and batch size.
        tokenizer: tokenizes the zero-shot prompts as the captions were.
    """

    def __init__(self, data: Data, tokenizer):
        self.data, self.tokenizer = data, tokenizer

    def __call__(self, trainer) -> dict[str, float]:
        return evaluate_contrastive(trainer.model, self.data, self.tokenizer, trainer.device, trainer.autocast)
