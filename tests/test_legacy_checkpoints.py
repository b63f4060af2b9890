"""Checkpoints written before the Transformer layer was composed from injected parts (flat
``encoder.num_heads``, ``encoder.norm`` ... keys; see tests/fixtures/legacy/README.md) load with the
same parameter names and compute what they computed then (up to float rounding of another torch build:
the parity tolerance, which a wrong parameter mapping fails), also as ``trainer.init_from``."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from checks import assert_parity
from omegaconf import OmegaConf
from safetensors.torch import load_file

from uer.config import compose_config, resolve
from uer.models.build import build_model
from uer.models.legacy import upgrade_model_config
from uer.train.checkpoint import load_config, load_weights
from uer.train.run import prepare

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
        assert_parity(hidden, EXPECTED[f"{name}.encoder"])
        if model.decoder is not None:
            hidden = model.decode(batch, hidden, mask)
            assert_parity(hidden, EXPECTED[f"{name}.decoder"])
            assert_parity(model.logits(hidden), EXPECTED[f"{name}.logits"])
            batch["labels"] = batch["decoder_input_ids"]
        assert_parity(model(batch).loss, EXPECTED[f"{name}.loss"])


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


def test_old_checkpoint_starts_a_run_of_the_current_preset(small_corpus, tmp_path):
    """trainer.init_from compares the checkpoint's (upgraded) model config with the preset's: an old
    checkpoint of the same model is accepted and its weights are the run's starting point."""
    trainer = prepare(compose_config(["+model=bert_tiny", f"trainer.init_from={FIXTURES / 'bert'}",
                                      f"data.corpus={small_corpus}", "data.seq_length=32", "data.num_proc=1",
                                      f"trainer.output_dir={tmp_path / 'run'}", "trainer.progress=false"]))
    saved = load_file(str(FIXTURES / "bert" / "model.safetensors"))
    state = trainer.model.state_dict()
    for name, tensor in saved.items():
        torch.testing.assert_close(state[name], tensor, rtol=0, atol=0, msg=name)
