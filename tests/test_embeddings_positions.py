"""Positions reach the encoder and decoder as context (for rotary attention): the batch's explicit
``position_ids``, and during cached generation the positions that continue the cache."""
from __future__ import annotations

import torch

from uer.config import compose_config, resolve
from uer.layers.kv_cache import KVCache
from uer.models import build_model

V = 37


def recorded(model, part: str) -> list:
    """Record the ``position_ids`` keyword each call of ``model.<part>`` receives (absent -> None)."""
    seen = []
    getattr(model, part).register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs.get("position_ids")), with_kwargs=True)
    return seen


def test_the_encoder_gets_explicit_and_continued_positions():
    model = build_model(resolve(compose_config(["+model=gpt2_tiny", f"model.vocab_size={V}"])).model).eval()
    seen = recorded(model, "encoder")
    ids = torch.randint(3, V, (2, 5))
    explicit = torch.tensor([[0, 1, 2, 0, 1], [0, 1, 2, 3, 4]])  # two packed documents in row 0
    model.encode({"input_ids": ids, "position_ids": explicit})
    assert torch.equal(seen[-1], explicit)
    cache = KVCache()
    model.encode({"input_ids": ids, "attention_mask": torch.ones(2, 5)}, cache)
    assert seen[-1] is None  # nothing cached yet: the encoder numbers 0 .. S-1 itself
    model.encode({"input_ids": ids[:, :2], "attention_mask": torch.ones(2, 7)}, cache)
    assert torch.equal(seen[-1], torch.tensor([[5, 6], [5, 6]]))


def test_the_decoder_gets_continued_positions():
    model = build_model(resolve(compose_config(["+model=bart_tiny", f"model.vocab_size={V}"])).model).eval()
    seen = recorded(model, "decoder")
    memory, memory_mask = model.encode({"input_ids": torch.randint(3, V, (1, 4))})
    cache = KVCache()
    model.decode({"decoder_input_ids": torch.tensor([[2, 5, 6]])}, memory, memory_mask, cache)
    model.decode({"decoder_input_ids": torch.tensor([[7]])}, memory, memory_mask, cache)
    assert seen[0] is None and torch.equal(seen[1], torch.tensor([[3]]))
