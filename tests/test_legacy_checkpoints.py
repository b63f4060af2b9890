"""Checkpoints written before the Transformer layer was composed from injected parts (flat
``encoder.num_heads``, ``encoder.norm`` ... keys; see tests/fixtures/legacy/README.md) load with the
same parameter names and compute exactly what they computed then."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from uer.config import compose_config, resolve
from uer.models.build import build_model
from uer.models.legacy import upgrade_model_config
from uer.train.checkpoint import load_config, load_weights

FIXTURES = Path(__file__).parent / "fixtures" / "legacy"
EXPECTED = load_file(str(FIXTURES / "expected.safetensors"))


@pytest.mark.parametrize("name", ["bert", "t5"])
def test_old_checkpoint_gives_the_same_outputs(name):
    assert "num_heads" in OmegaConf.load(FIXTURES / name / "config.yaml").model.encoder  # still the flat form
    cfg = load_config(FIXTURES / name)
    assert "attention" in cfg.model.encoder and "num_heads" not in cfg.model.encoder
    model = build_model(cfg.model).eval()
    load_weights(model, FIXTURES / name / "model.safetensors")  # strict: every parameter name still matches
    batch = {k.split(".", 2)[2]: v for k, v in EXPECTED.items() if k.startswith(f"{name}.batch.")}
    with torch.no_grad():
        hidden, mask = model.encode(batch)
        torch.testing.assert_close(hidden, EXPECTED[f"{name}.encoder"], rtol=0, atol=0)
        if model.decoder is not None:
            hidden = model.decode(batch, hidden, mask)
            torch.testing.assert_close(hidden, EXPECTED[f"{name}.decoder"], rtol=0, atol=0)
            torch.testing.assert_close(model.logits(hidden), EXPECTED[f"{name}.logits"], rtol=0, atol=0)
            batch["labels"] = batch["decoder_input_ids"]
        torch.testing.assert_close(model(batch).loss, EXPECTED[f"{name}.loss"], rtol=0, atol=0)


def test_flat_config_is_built_directly():
    """build_model upgrades a flat model config itself (configs read without load_config)."""
    flat = OmegaConf.load(FIXTURES / "t5" / "config.yaml").model
    model = build_model(flat)
    assert model.encoder.layers[0].attention.qkv.bias is None and model.decoder.position_bias is not None
    assert type(model.encoder.final_norm).__name__ == "RMSNorm"


@pytest.mark.parametrize("preset", ["bert_tiny", "t5_tiny", "gpt2_tiny"])
def test_upgrade_is_a_no_op_on_the_new_form(preset):
    cfg = resolve(compose_config([f"+model={preset}", "model.vocab_size=64"])).model
    assert upgrade_model_config(cfg) is cfg
