"""Embedding parts return ``(x, mask)``, so a part that changes the sequence length carries the mask
with it; each part owns its initialization and :class:`uer.models.Model` does not clobber it."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from uer.config import compose_config, resolve
from uer.embeddings import Embedding, PatchEmbedding, PositionEmbedding, WordEmbedding
from uer.models import Model, build_model

V = 53
HERE = (__name__ + ".",)  # test-only parts are named by _target_ like any user class


class Subsample(nn.Module):
    """Test-only part that halves S, as a speech front end's strided convolution does:
    (B, S, D) -> (B, ceil(S/2), D), mask -> every other position. No init hook: Model's default
    applies to its Conv1d."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel_size=1, stride=2)

    def forward(self, batch, x, mask):
        x = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return x, None if mask is None else mask[:, ::2]


class LayerScale(nn.Module):
    """Test-only part with its own initialization rule: an identity projection times a per-channel
    scale of 1e-4 (LayerScale, Touvron et al. 2021), whatever the model's init std."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.gamma = nn.Parameter(torch.empty(dim))

    def init_weights(self, std: float) -> None:
        nn.init.eye_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        nn.init.constant_(self.gamma, 1e-4)

    def forward(self, batch, x, mask):
        return self.gamma * self.proj(x), mask


def bert(**parts) -> Model:
    cfg = resolve(compose_config(["+model=bert_tiny", f"model.vocab_size={V}"]))
    for name, part in parts.items():
        cfg.model.embedding.parts[name] = OmegaConf.create(part)
    return build_model(cfg.model, allowed=("uer.", *HERE))


def padded_batch(lengths: list[int]) -> dict[str, torch.Tensor]:
    mask = (torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]).long()
    ids = torch.randint(3, V, mask.shape, generator=torch.Generator().manual_seed(0)).masked_fill(mask == 0, 0)
    return {"input_ids": ids, "attention_mask": mask}


def test_every_part_returns_x_and_its_mask():
    batch = padded_batch([5, 3])
    mask = batch["attention_mask"].bool()
    x, out_mask = WordEmbedding(V, 8)(batch, None, mask)
    assert x.shape == (2, 5, 8) and out_mask is mask
    y, out_mask = PositionEmbedding(16, 8)(batch, x, mask)
    assert y.shape == x.shape and out_mask is mask
    x, out_mask = Embedding({"word": WordEmbedding(V, 8)}, 8)(batch)
    assert torch.equal(out_mask, mask)
    with pytest.raises(ValueError, match="first among the embedding parts"):
        WordEmbedding(V, 8)(batch, x, mask)


def test_a_part_that_changes_the_length_carries_the_mask_to_the_encoder():
    model = bert(subsample={"_target_": f"{__name__}.Subsample", "dim": 128}).eval()
    batch = padded_batch([7, 4, 1])
    hidden, mask = model.encode(batch)
    assert hidden.shape[:2] == (3, 4)
    assert torch.equal(mask, batch["attention_mask"][:, ::2].bool())
    # the padded positions of the shortened sequence are masked: changing them changes no real output
    other = {**batch, "input_ids": batch["input_ids"].masked_fill(batch["attention_mask"] == 0, 7)}
    hidden_other, _ = model.encode(other)
    torch.testing.assert_close(hidden_other[mask], hidden[mask], rtol=1e-5, atol=1e-6)


def test_patch_embedding_gives_a_mask_of_the_patch_length():
    patch = PatchEmbedding(image_size=8, patch_size=4, channels=3, dim=6)
    pixels = torch.randn(2, 3, 8, 8)
    x, mask = patch({"pixel_values": pixels}, None, torch.ones(2, 5, dtype=torch.bool))
    assert x.shape == (2, 5, 6) and mask is None  # no pixel mask: no patch is padding
    pixel_mask = torch.ones(2, 8, 8, dtype=torch.long)
    pixel_mask[1, :, 4:] = 0  # the second image is padded on its right half
    x, mask = patch({"pixel_values": pixels, "pixel_mask": pixel_mask})
    assert x.shape == (2, 5, 6)
    assert mask.tolist() == [[True] * 5, [True, True, False, True, False]]  # [CLS], then patches row by row


def test_a_part_with_its_own_init_is_not_clobbered_and_the_default_still_applies():
    model = bert(subsample={"_target_": f"{__name__}.Subsample", "dim": 128},
                 scale={"_target_": f"{__name__}.LayerScale", "dim": 128})
    scale = model.embedding.scale
    assert torch.equal(scale.proj.weight, torch.eye(128)) and not scale.proj.bias.any()
    assert torch.equal(scale.gamma, torch.full((128,), 1e-4))
    conv = model.embedding.subsample.conv  # no hook: normal(0, init_std), zero bias (torch's default is not)
    assert not conv.bias.any() and 0.015 < conv.weight.std() < 0.025


def old_init(model: Model, std: float) -> None:
    """The rule before parts owned their init: every Linear/Conv2d of the model, in module order."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


@pytest.mark.parametrize("preset,size", [("bert_tiny", f"model.vocab_size={V}"), ("vit_tiny", "model.num_labels=3")])
def test_a_seeded_build_is_initialized_as_before(preset, size, monkeypatch):
    cfg = resolve(compose_config([f"+model={preset}", size]))
    torch.manual_seed(0)
    new = build_model(cfg.model).state_dict()
    monkeypatch.setattr(Model, "init_weights", old_init)
    torch.manual_seed(0)
    old = build_model(cfg.model).state_dict()
    assert new.keys() == old.keys()
    assert all(torch.equal(new[k], old[k]) for k in new)


def test_the_word_embedding_keeps_its_own_init_std():
    t5 = build_model(resolve(compose_config(["+model=t5_tiny", f"model.vocab_size={V}"])).model)
    assert 0.9 < t5.embedding.word.weight.std() < 1.1  # T5's init_std 1.0, not the model's 0.02
    assert 0.015 < bert().embedding.word.weight.std() < 0.025
