"""Training parity with transformers: for every converted family and head, the loss and the
gradient of every parameter equal the transformers model's on the same batch (dropout off), so a
uer training step updates the weights exactly as the reference would."""
from __future__ import annotations

import copy

import pytest
import torch
from checks import PARITY_ATOL, PARITY_RTOL, assert_parity
from convert_cases import CASES, batch, hf_inputs, load_uer, save_hf
from safetensors.torch import load_file

from uer.config import resolve
from uer.convert import convert, engine
from uer.convert.configs import export_head
from uer.train.checkpoint import load_config

TRAINED = [c for c in CASES if c.architecture not in ("BertModel", "ViTModel")]  # those with a loss


def hf_gradients(hf, directory) -> dict[str, torch.Tensor]:
    """``hf``'s parameter gradients under the names ``save_pretrained`` writes (transformers 5
    renames some modules in memory, e.g. ViT's attention, and maps them back on saving)."""
    grads = copy.deepcopy(hf)
    for p, g in zip(grads.parameters(), hf.parameters(), strict=True):
        p.data = g.grad.clone()
    grads.save_pretrained(directory)
    return load_file(str(directory / "model.safetensors"))


def uer_gradients(case, model, directory) -> dict[str, torch.Tensor]:
    """``model``'s parameter gradients under the HF names, through the export mapping (fused and
    split tensors are moved exactly as the weights are)."""
    model_cfg = resolve(load_config(directory).model)
    family, head = export_head(model_cfg, case.architecture, None)
    grads = copy.deepcopy(model)
    for (name, p), g in zip(grads.named_parameters(), model.parameters(), strict=True):
        assert g.grad is not None, f"{name} got no gradient"
        p.data = g.grad.clone()
    tensors, _ = engine.to_hf(family, head, grads, engine.num_layers(model_cfg))
    return tensors


@pytest.mark.parametrize("case", TRAINED, ids=lambda c: c.architecture)
def test_loss_and_every_gradient_equal_transformers(case, tmp_path):
    hf = save_hf(case, tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "uer")
    model = load_uer(tmp_path / "uer")  # eval mode: no dropout on either side
    fields = batch(case)
    ref = hf(**hf_inputs(case, fields))
    out = model(fields)
    assert_parity(out.loss, ref.loss)
    ref.loss.backward()
    out.loss.backward()
    ours = uer_gradients(case, model, tmp_path / "uer")
    theirs = hf_gradients(hf, tmp_path / "hf_grads")
    assert ours.keys() == theirs.keys()
    scale = max(g.abs().max().item() for g in theirs.values())
    for name, grad in theirs.items():
        torch.testing.assert_close(ours[name], grad, atol=PARITY_ATOL * max(scale, 1.0), rtol=PARITY_RTOL, msg=name)
