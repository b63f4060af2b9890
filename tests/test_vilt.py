"""ViLT (Kim et al. 2021): the single-stream embedding against Hugging Face's ``ViltEmbeddings``,
the ITM target, and the collator's ITM negatives and masking (seeded per sample)."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import transformers
from checks import assert_parity
from PIL import Image
from sklearn.datasets import load_sample_images
from transformers import ViltImageProcessorPil

from uer.config import compose_config, resolve
from uer.data.collators import make_collator
from uer.data.image_text import IMAGE_PROCESSORS, ImageTextCollator, clip_pixels
from uer.data.images import square_pixels
from uer.data.masking import MaskedLm
from uer.data.tokenizer import Tokenizer
from uer.data.vilt import ItmMlmCollator, itm_partners
from uer.models import build_model

SPECIALS = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}


class Vocab:
    """The tokenizer attributes the MLM settings read (ids of a 50-token vocabulary)."""

    all_special_ids = list(SPECIALS.values())
    pad_token_id, mask_token_id, vocab_size = SPECIALS["pad"], SPECIALS["mask"], 50


def png(value: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def pairs(rows, rngs):
    """A stand-in image–text pair collator of the same contract (uer.data.image_text): the image's
    gray value as its pixels, captions right-padded with 0."""
    pixels = [np.asarray(Image.open(io.BytesIO(b)), dtype=np.float32)[None] / 255 for b in rows["image"]]
    width = max(len(r) for r in rows["input_ids"])
    ids = np.array([list(r) + [0] * (width - len(r)) for r in rows["input_ids"]], dtype=np.int64)
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy((ids != 0).astype(np.int64)),
            "pixel_values": torch.from_numpy(np.stack(pixels)), "labels": torch.tensor(rows["label"])}


def rows(n: int) -> dict[str, list]:
    """n synthetic pairs of the ImageTextProcessor format: image i has gray value 10·i, label i % 3."""
    return {"image": [png(10 * i) for i in range(n)], "label": [i % 3 for i in range(n)],
            "input_ids": [[2, *range(5 + i % 4, 12 + i % 4 + i % 3), 3] for i in range(n)]}


def rngs(indices) -> list[np.random.Generator]:
    return [np.random.default_rng([0, 0, i]) for i in indices]


def test_itm_negatives_and_masks_are_drawn_per_sample():
    collate = ItmMlmCollator(pairs, MaskedLm(Vocab(), 0.3), itm_prob=0.5)
    data = rows(12)
    batch = collate(data, rngs(range(12)))
    itm = batch["itm_labels"]
    assert set(itm.tolist()) == {0, 1}
    gray = (batch["pixel_values"][:, 0, 0, 0] * 255).round().long()
    for i in range(12):  # a matched pair keeps its image; a negative shows an image of another class
        shown = int(gray[i]) // 10
        assert (shown == i) == bool(itm[i]) and (itm[i] or shown % 3 != i % 3)
    # MLM: labels only at real, non-special positions of matched pairs; ITM labels do not leak into them
    assert (batch["labels"][itm == 0] == -100).all() and (batch["labels"][itm == 1] != -100).any()
    real = batch["attention_mask"].bool() & (batch["labels"] != -100)
    assert (batch["labels"] != -100).sum() > 0 and torch.equal(real, batch["labels"] != -100)
    assert not torch.isin(batch["labels"][real], torch.tensor(list(SPECIALS.values()))).any()
    # the masks and ITM decisions of rows 0..5 do not depend on which other rows share their batch
    half = collate({k: v[:6] for k, v in data.items()}, rngs(range(6)))
    assert torch.equal(half["itm_labels"], itm[:6])
    width = half["labels"].shape[1]
    assert torch.equal(half["labels"], batch["labels"][:6, :width])


def test_no_partner_means_no_negative():
    data = {**rows(3), "label": [1, 1, 1]}  # every row the same class: no true negative exists
    assert (itm_partners(data, rngs(range(3)), itm_prob=1.0) == np.arange(3)).all()
    unlabeled = {**rows(3), "label": [-1, -1, -1]}  # -1 = no label: any other row will do
    assert (itm_partners(unlabeled, rngs(range(3)), itm_prob=1.0) != np.arange(3)).all()


@pytest.fixture(scope="module")
def vilt():
    cfg = resolve(compose_config(["+model=vilt_tiny", "model.vocab_size=50", "model.dim=36", "model.num_heads=4",
                                  "model.ffn_dim=52", "model.image_size=12", "model.patch_size=4"]))
    torch.manual_seed(0)
    return build_model(cfg.model).eval()


def test_embedding_equals_transformers_vilt_embeddings(vilt):
    """Text then [CLS] + patches, each with its modality vector, against HF ViltEmbeddings holding
    the same weights (HF visits patches in a random order: compare them sorted by position)."""
    config = transformers.ViltConfig(hidden_size=36, vocab_size=50, max_position_embeddings=40, image_size=12,
                                     patch_size=4, num_attention_heads=4)
    ref = transformers.models.vilt.modeling_vilt.ViltEmbeddings(config).eval()
    e = vilt.embedding
    with torch.no_grad():
        ref.text_embeddings.word_embeddings.weight.copy_(e.text.word.weight)
        ref.text_embeddings.position_embeddings.weight.copy_(e.text.position.weight)
        ref.text_embeddings.token_type_embeddings.weight.copy_(e.text.segment.weight)
        ref.text_embeddings.LayerNorm.load_state_dict(e.text.norm.state_dict())
        ref.cls_token.copy_(e.image.patch.cls)
        ref.position_embeddings.copy_(e.image.patch.position)
        ref.patch_embeddings.projection.load_state_dict(e.image.patch.proj.state_dict())
        ref.token_type_embeddings.weight.copy_(e.modality)
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, 50, (2, 7), generator=g)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    types = torch.tensor([[0] * 3 + [1] * 4] * 2)
    pixels = torch.randn(2, 3, 12, 12, generator=g)
    with torch.no_grad():
        x, m = e({"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "pixel_values": pixels})
        expected, expected_mask = ref(ids, mask, types, pixels, torch.ones(2, 12, 12, dtype=torch.long), None, None)
    assert x.shape == (2, 7 + 1 + 9, 36) and torch.equal(m, expected_mask.bool())
    assert_parity(x[:, :8], expected[:, :8])  # text and the image [CLS]
    key = lambda t: t.sum(-1).argsort(dim=1)  # noqa: E731 - patches in a canonical order
    patches, ref_patches = x[:, 8:], expected[:, 8:]
    assert_parity(patches.gather(1, key(patches)[..., None].expand_as(patches)),
                  ref_patches.gather(1, key(ref_patches)[..., None].expand_as(ref_patches)))


def test_mlm_reads_the_text_positions_and_itm_the_first(vilt):
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(5, 50, (3, 6), generator=g)
    labels = torch.full((3, 6), -100)
    labels[:, 2] = ids[:, 2]
    batch = {"input_ids": ids, "pixel_values": torch.randn(3, 3, 12, 12, generator=g), "labels": labels,
             "itm_labels": torch.tensor([1, 0, 1])}
    out = vilt(batch)
    hidden, _ = vilt.encode(batch)
    itm = vilt.target.itm
    logit = itm.classifier(torch.tanh(itm.pooler(hidden[:, 0]))).squeeze(-1)
    assert_parity(out.logits["itm"], logit)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logit, batch["itm_labels"].float())
    assert_parity(out.terms["itm"].loss_sum / 3, expected)
    assert out.metrics["itm/acc"][0] == ((logit > 0).long() == batch["itm_labels"]).sum()
    mlm = vilt.target.mlm
    assert_parity(out.logits["mlm"], mlm.decoder(mlm.norm(mlm.act(mlm.dense(hidden[:, 2])))))
    assert mlm.decoder.weight is vilt.embedding.text.word.weight


def test_data_vilt_pixels_equal_vilt_image_processor_on_real_images():
    """data=vilt's collator gives ViltImageProcessor's pixels of each image resized to the model's
    square size (real photographs, a crop, a grayscale digit), at vilt_tiny's size and at vilt_base's
    384 with the processor's default size divisor of 32; data=image_text keeps CLIP's pixels."""
    photos = load_sample_images().images
    digit = Image.fromarray((np.arange(64, dtype=np.uint8) * 4).reshape(8, 8))
    images = [Image.fromarray(a) for a in photos] + [Image.fromarray(photos[0][:301, :200]), digit]
    encoded = []
    for image in images:
        out = io.BytesIO()
        image.save(out, format="PNG")
        encoded.append(out.getvalue())
    cfg = resolve(compose_config(["+model=vilt_tiny"]))
    collate = make_collator(cfg.data, Tokenizer.load(cfg.data.tokenizer))
    rows = {"image": encoded, "input_ids": [[2, 10, 3]] * len(images), "label": [0] * len(images)}  # no ITM swaps
    ours = collate(rows, [np.random.default_rng(i) for i in range(len(images))])["pixel_values"].numpy()
    for size, divisor, pixels in ((32, 1, ours), (384, 32, None)):
        reference = ViltImageProcessorPil(size={"shortest_edge": size}, size_divisor=divisor)
        for i, image in enumerate(images):
            square = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
            expected = reference(square, return_tensors="np")["pixel_values"][0]
            actual = square_pixels(image, size) if pixels is None else pixels[i]
            assert np.array_equal(actual, expected), (size, i)
    assert IMAGE_PROCESSORS["clip"] is clip_pixels and ImageTextCollator(None, 32).pixels is clip_pixels
