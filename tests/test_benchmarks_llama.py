"""benchmarks/llama_throughput.py compares like with like: the peer it builds is the converter's
``LlamaForCausalLM`` with the uer model's weights (same parameter count, same loss before training,
same greedy tokens with the cache)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from checks import assert_parity

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from llama_throughput import TOKENS, lm_batches, models

from uer.generation import generate


@pytest.mark.slow
def test_the_peer_is_the_same_model():
    uer_model, m, peer, _ = models("llama_tiny", vocab_size=97, seed=0)
    assert type(peer).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in uer_model.parameters()) == sum(p.numel() for p in peer.parameters())
    batch = lm_batches(m.vocab_size, 1, batch=2, seq=19, seed=0, device="cpu")[0]
    uer_model.eval(), peer.eval()
    with torch.no_grad():
        assert_parity(uer_model(batch).loss, peer(**batch).loss)
        prompt = batch["input_ids"][:, :5]
        ours = generate(uer_model, {"input_ids": prompt}, max_new_tokens=6, eos_token_id=None,
                        pad_token_id=TOKENS.pad_token_id)
        theirs = peer.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=6,
                               do_sample=False, eos_token_id=None, pad_token_id=TOKENS.pad_token_id)
    assert torch.equal(ours[:, -6:], theirs[:, 5:])
