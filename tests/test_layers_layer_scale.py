"""LayerScale, added as one class and one YAML file, is selected from config, builds, trains."""
from __future__ import annotations

import torch

from uer.config import compose_config, resolve
from uer.layers.layer_scale import LayerScale
from uer.models.build import build_model


def test_layer_scale_from_config_builds_and_trains_a_step():
    cfg = resolve(compose_config(["+model=bert_tiny", "model/encoder/ffn=layer_scale", "model.encoder.ffn.init=0.25",
                                  "model.dim=16", "model.num_heads=2", "model.ffn_dim=32", "model.vocab_size=64"]))
    torch.manual_seed(0)
    model = build_model(cfg.model)
    ffns = [layer.ffn for layer in model.encoder.layers]
    assert all(isinstance(f, LayerScale) for f in ffns) and ffns[0] is not ffns[1]
    assert all(torch.equal(f.gamma, torch.full((16,), 0.25)) for f in ffns)
    assert ffns[0].branch.up.weight.shape == (32, 16)  # the wrapped dense FFN with the model's sizes
    ids = torch.randint(5, 64, (2, 8))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids),
             "labels": torch.where(torch.arange(8) % 3 == 0, ids, -100), "next_sentence_label": torch.tensor([0, 1])}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(batch).loss
    loss.backward()
    assert torch.isfinite(loss) and ffns[0].gamma.grad.abs().sum() > 0
    optimizer.step()
    assert not torch.equal(ffns[0].gamma, torch.full((16,), 0.25))
