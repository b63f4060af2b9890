"""examples/image_classification: the encoder of a plain ViT checkpoint and the vision tower of a
CLIP checkpoint become the body of the classifier with their weights unchanged; ``+model=clip_tiny``
is that tower from random initialization; a CLIP tower fine-tunes end to end (slow)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from convert_cases import save_random_uer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `examples.*`

from examples.finetune import compose_recipe
from examples.image_classification.train import HERE, build, run

PRESETS = {"clip_tiny": ("model.vocab_size=99", "model.vision.dim=36", "model.vision.num_heads=3",
                         "model.vision.ffn_dim=52", "model.vision.image_size=20", "model.vision.num_layers=1",
                         "model.text.num_layers=1"),
           "vit_tiny": ("model.dim=36", "model.num_heads=3", "model.ffn_dim=52", "model.image_size=20",
                        "model.num_layers=1", "model.num_labels=4")}
BODY = {"clip_tiny": {"embedding.second.": "embedding.", "encoder.second.": "encoder."},
        "vit_tiny": {"embedding.": "embedding.", "encoder.": "encoder."}}
"""Where each checkpoint's image encoder weights sit, and where the classifier has them."""


def save(preset: str, directory: Path) -> dict[str, torch.Tensor]:
    """A ``preset`` checkpoint with random weights; returns its state dict."""
    return save_random_uer(directory, [f"+model={preset}", *PRESETS[preset]]).state_dict()


def body_of(weights: dict[str, torch.Tensor], preset: str) -> dict[str, torch.Tensor]:
    """A ``preset`` checkpoint's image encoder weights under the classifier's names."""
    return {new + k[len(old):]: v for k, v in weights.items() for old, new in BODY[preset].items() if k.startswith(old)}


@pytest.mark.parametrize("preset", PRESETS)
def test_classifier_body_is_the_checkpoints_image_encoder(preset, tmp_path):
    weights = save(preset, tmp_path / "ckpt")
    cfg, model_args = compose_recipe(HERE, [f"trainer.init_from={tmp_path / 'ckpt'}"])
    model, model_cfg = build(cfg, model_args, num_labels=10)
    mine = model.state_dict()
    expected = body_of(weights, preset)
    assert expected.keys() == {k for k in mine if not k.startswith("target.")}
    assert all(torch.equal(mine[k], v) for k, v in expected.items())
    assert (model_cfg.dim, model_cfg.image_size, model_cfg.channels) == (36, 20, 3)
    logits = model({"pixel_values": torch.randn(2, 3, 20, 20), "labels": torch.tensor([0, 9])}).logits["cls"]
    assert logits.shape == (2, 10)


def test_a_clip_preset_from_random_initialization_is_its_vision_tower(tmp_path):
    expected = body_of(save("clip_tiny", tmp_path / "ckpt"), "clip_tiny")
    cfg, model_args = compose_recipe(HERE, ["+model=clip_tiny", *PRESETS["clip_tiny"]])
    model, model_cfg = build(cfg, model_args, num_labels=10)
    body = {k: v.shape for k, v in model.state_dict().items() if not k.startswith("target.")}
    assert body == {k: v.shape for k, v in expected.items()} and model_cfg.image_size == 20


@pytest.mark.slow
def test_clip_vision_tower_fine_tunes(tmp_path):
    save("clip_tiny", tmp_path / "ckpt")
    result = run([f"trainer.init_from={tmp_path / 'ckpt'}", f"trainer.output_dir={tmp_path / 'out'}",
                  "finetune.max_steps=3", "trainer.progress=false", "task.labels_per_class=2"])
    assert set(result) == {"dev/acc", "test/acc"} and 0 <= result["test/acc"] <= 1
    assert (tmp_path / "out" / "best").is_dir()
