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
from uer.targets.lm import LmTarget


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


@pytest.mark.parametrize("shift, smoothing", [(True, 0.0), (False, 0.1)])
def test_the_static_shape_head_for_compile_computes_what_eager_does(shift, smoothing):
    """``LmTarget.every_position`` (what ``torch.compile`` traces: no position selection, so no graph
    break) gives forward's loss, accuracy and gradients, ignored labels included."""
    torch.manual_seed(0)
    target = LmTarget(12, 23, label_smoothing=smoothing, shift=shift)
    hidden = torch.randn(3, 7, 12, requires_grad=True)
    labels = torch.randint(0, 23, (3, 7))
    labels[0, 4:] = -100
    labels[2, :2] = -100
    out = target(hidden, {"labels": labels})
    grads = torch.autograd.grad(out.loss, [hidden, target.decoder.weight])
    kept = labels[:, 1:] if shift else labels
    static = target.every_position(hidden, kept, kept != -100)
    assert_parity(static.loss, out.loss)
    assert [int(v) for v in static.metrics["lm/acc"]] == [int(v) for v in out.metrics["lm/acc"]]
    for ours, theirs in zip(torch.autograd.grad(static.loss, [hidden, target.decoder.weight]), grads):
        assert_parity(ours, theirs)


@pytest.mark.slow
def test_a_llama_training_step_is_one_graph_for_torch_compile():
    uer_model, m, _, _ = models("llama_tiny", vocab_size=97, seed=0)
    batch = lm_batches(m.vocab_size, 1, batch=2, seq=9, seed=0, device="cpu")[0]
    explained = torch._dynamo.explain(lambda b: uer_model(b).loss)(batch)
    assert explained.graph_break_count == 0, explained.break_reasons
