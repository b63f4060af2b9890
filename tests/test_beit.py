"""BEiT masked image modeling parts: blockwise masking, the [MASK] patch, the k-means visual tokenizer
fitted before training, the MIM and SimMIM heads and the 2D relative position bias."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from transformers import BeitConfig
from transformers.models.beit.modeling_beit import BeitRelativePositionBias

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `examples.*`

from examples.image_classification.train import few_label_split
from uer.data.fitting import fit_to_data
from uer.data.loader import split_indices
from uer.data.mim import MaskedImageCollator, blockwise_mask
from uer.embeddings.patch import PatchEmbedding
from uer.errors import UerError
from uer.layers.attention import MultiHeadAttention
from uer.layers.relative_position_2d import RelativePositionBias2d
from uer.layers.visual_tokenizer import KMeansTokenizer, patchify
from uer.targets.mim import MimTarget, SimMimTarget


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_blockwise_mask_masks_about_the_ratio_in_blocks_and_is_seeded():
    counts = []
    for seed in range(40):
        mask = blockwise_mask(np.random.default_rng(seed), 8, 8, 26, 5).reshape(8, 8)
        counts.append(mask.sum())
        assert np.array_equal(mask.reshape(-1), blockwise_mask(np.random.default_rng(seed), 8, 8, 26, 5))
        # blocks, not scattered patches: most masked patches have a masked 4-neighbour
        padded = np.pad(mask, 1)
        neighbours = padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
        assert (mask & neighbours).sum() >= 0.8 * mask.sum()
    assert max(counts) <= 26 and np.mean(counts) > 0.9 * 26


def test_collator_adds_a_mask_per_image_independent_of_the_batch():
    collate = MaskedImageCollator(image_size=16, patch_size=4, channels=1)
    rows = {"image": [png(i) for i in range(3)], "label": [0, 1, 2]}
    batch = collate(rows, [np.random.default_rng([0, 0, i]) for i in range(3)])
    assert batch["bool_masked_pos"].shape == (3, 16) and batch["bool_masked_pos"].dtype == torch.bool
    assert batch["pixel_values"].shape == (3, 1, 16, 16)
    alone = collate({"image": rows["image"][2:], "label": [2]}, [np.random.default_rng([0, 0, 2])])
    assert torch.equal(alone["bool_masked_pos"][0], batch["bool_masked_pos"][2])
    with pytest.raises(UerError, match="data.mask_ratio"):
        MaskedImageCollator(image_size=16, patch_size=4, mask_ratio=1.0)


def test_mask_token_replaces_exactly_the_masked_patches():
    torch.manual_seed(0)
    embed = PatchEmbedding(image_size=8, patch_size=4, channels=1, dim=6, mask_token=True)
    pixels = torch.randn(2, 1, 8, 8)
    masked = torch.tensor([[True, False, False, True], [False] * 4])
    plain, _ = embed({"pixel_values": pixels})
    x, _ = embed({"pixel_values": pixels, "bool_masked_pos": masked})
    patches = x[:, 1:] - embed.position[:, 1:]
    assert torch.allclose(patches[masked], embed.mask_token[0].expand(2, -1))
    assert torch.equal(x[:, 1:][~masked], plain[:, 1:][~masked]) and torch.equal(x[:, 0], plain[:, 0])


def test_kmeans_tokenizer_is_deterministic_and_tokens_are_nearest_centroids():
    pixels = torch.randn(6, 2, 8, 8)
    first, second = KMeansTokenizer(4, 2, 5, seed=3), KMeansTokenizer(4, 2, 5, seed=3)
    with pytest.raises(ValueError, match="not fitted"):
        first(pixels)
    first.fit(pixels)
    second.fit(pixels)
    assert torch.equal(first.codebook, second.codebook) and first.fitted
    tokens = first(pixels)
    assert tokens.shape == (6, 4) and 0 <= tokens.min() and tokens.max() < 5
    # a patch that is a centroid (shape only: scale and shift do not matter) gets that centroid's token
    centroid = first.codebook[2].reshape(4, 4, 2).permute(2, 0, 1)
    assert first((3 * centroid + 1)[None].repeat(1, 1, 2, 2))[0].tolist() == [2, 2, 2, 2]


def test_patchify_matches_the_patch_embedding_order():
    pixels = torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(1, 2, 8, 8)
    patches = patchify(pixels, 4)  # (1, 4, 32)
    assert torch.equal(patches[0, 1].reshape(4, 4, 2)[..., 0], pixels[0, 0, :4, 4:])  # top-right patch second


def test_mim_loss_reads_only_the_masked_patches():
    torch.manual_seed(0)
    target = MimTarget(dim=8, patch_size=4, channels=1, codebook_size=3)
    pixels = torch.randn(2, 1, 8, 8)
    target.fit_to_data({"pixel_values": pixels})
    masked = torch.tensor([[True, False, True, False], [False, False, False, True]])
    hidden = torch.randn(2, 5, 8, requires_grad=True)
    out = target(hidden, {"pixel_values": pixels, "bool_masked_pos": masked})
    out.loss.backward()
    assert out.terms["mim"].num_items == 3 and out.logits["mim"].shape == (3, 3)
    touched = hidden.grad.abs().sum(-1) > 0
    assert torch.equal(touched[:, 1:], masked) and not touched[:, 0].any()


def test_simmim_loss_is_the_mean_absolute_error_of_masked_pixels():
    target = SimMimTarget(dim=8, patch_size=4, channels=1)
    pixels = torch.randn(1, 1, 8, 8)
    masked = torch.tensor([[False, True, False, False]])
    hidden = torch.randn(1, 5, 8)
    out = target(hidden, {"pixel_values": pixels, "bool_masked_pos": masked})
    predicted = target.head(hidden[0, 2])
    expected = (predicted - pixels[0, 0, :4, 4:].reshape(-1)).abs().mean()
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)


def test_relative_position_bias_2d_matches_transformers():
    config = BeitConfig(image_size=12, patch_size=4, num_attention_heads=3)
    reference = BeitRelativePositionBias(config)
    ours = RelativePositionBias2d(num_heads=3, image_size=12, patch_size=4)
    with torch.no_grad():
        reference.relative_position_bias_table.normal_()
        ours.table.copy_(reference.relative_position_bias_table)
    expected = reference((3, 3))
    torch.testing.assert_close(ours(10), expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="3x3 patches"):
        ours(9)


def test_per_layer_bias_is_added_to_the_attention_scores():
    torch.manual_seed(0)
    def bias():
        return RelativePositionBias2d(num_heads=2, image_size=4, patch_size=2)
    attention = MultiHeadAttention(dim=8, num_heads=2, position_bias=bias)
    plain = MultiHeadAttention(dim=8, num_heads=2)
    plain.load_state_dict(attention.state_dict(), strict=False)
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(attention(x), plain(x), rtol=1e-5, atol=1e-6)  # a zero table changes nothing
    with torch.no_grad():
        attention.position_bias.table.normal_()
    expected = plain(x, attention.position_bias(5))
    torch.testing.assert_close(attention(x), expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(attention(x), plain(x))


def test_fit_to_data_fits_the_codebook_from_training_rows_and_names_a_bad_size():
    model = torch.nn.ModuleDict({"target": MimTarget(dim=8, patch_size=4, channels=1, codebook_size=4,
                                                     num_fit_images=3)})
    rows = RowsStub([png(i) for i in range(6)])
    collate = MaskedImageCollator(image_size=8, patch_size=4, channels=1)
    fit_to_data(model, rows, np.arange(6), collate, seed=0)
    assert model["target"].tokenizer.fitted and len(rows.asked) == 3
    too_big = torch.nn.ModuleDict({"target": MimTarget(dim=8, patch_size=4, channels=1, codebook_size=500)})
    with pytest.raises(UerError, match="model.target: .*codebook_size 500"):
        fit_to_data(too_big, rows, np.arange(6), collate, seed=0)


class RowsStub:
    """Image rows indexable by a list of ids, as the dataset is; records what was read."""

    def __init__(self, images: list[bytes]):
        self.images, self.asked = images, []

    def __getitem__(self, ids: list[int]) -> dict[str, list]:
        self.asked = list(ids)
        return {"image": [self.images[i] for i in ids], "label": [0] * len(ids)}


def test_few_label_split_tests_on_pretrainings_held_out_rows():
    labels = np.repeat(np.arange(3), 20)
    task = OmegaConf.create({"test_samples": 9, "labels_per_class": 4, "seed": 5})
    split = few_label_split(labels, task)
    assert np.array_equal(split["test"], np.sort(split_indices(60, 9, 5)[1]))  # what uer-pretrain holds out
    assert [np.bincount(labels[split[s]]).tolist() for s in ("train", "dev")] == [[4, 4, 4], [4, 4, 4]]
    assert not set(split["train"]) & set(split["dev"]) and not (set(split["train"]) | set(split["dev"])) & set(split["test"])
    with pytest.raises(UerError, match="task.labels_per_class=9: class"):
        few_label_split(labels, OmegaConf.create({**task, "labels_per_class": 9}))
