"""The MLM head's gather by the collator's ``masked_positions``: the same rows, loss and gradients
as finding them from the labels, and (slow) no graph break under torch.compile."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from checks import assert_parity

from uer.data.masking import MlmCollator
from uer.targets.mlm import MlmTarget

VOCAB, DIM = 37, 12


def batch_and_hidden(seed: int = 0):
    """A padded MLM batch of 5 rows (lengths 9..17) from MlmCollator and random hidden states."""
    rng = np.random.default_rng(seed)
    rows = {"input_ids": [[2, *rng.integers(5, VOCAB, n - 2).tolist(), 3] for n in (9, 17, 12, 17, 10)]}
    collate = MlmCollator([0, 1, 2, 3, 4], 0, 4, VOCAB, mask_prob=0.3)
    batch = collate(rows, [np.random.default_rng([seed, i]) for i in range(5)])
    hidden = torch.randn(5, batch["input_ids"].shape[1], DIM, generator=torch.Generator().manual_seed(seed))
    return batch, hidden


def run(target: MlmTarget, batch: dict, hidden: torch.Tensor):
    hidden = hidden.clone().requires_grad_(True)
    out = target(hidden, batch)
    out.loss.backward()
    return out, hidden.grad


def test_given_positions_match_the_labels():
    torch.manual_seed(0)
    target = MlmTarget(DIM, VOCAB)
    batch, hidden = batch_and_hidden()
    without = {k: v for k, v in batch.items() if k != "masked_positions"}
    given, grad_given = run(target, batch, hidden)
    found, grad_found = run(target, without, hidden)
    assert given.logits["mlm"].shape[0] == int((batch["labels"] != -100).sum()) > 0
    assert_parity(given.logits["mlm"], found.logits["mlm"], "logits")
    assert_parity(given.loss, found.loss, "loss")
    assert_parity(grad_given, grad_found, "hidden grad")
    assert torch.equal(given.metrics["mlm/acc"][1], found.metrics["mlm/acc"][1])
    assert torch.equal(given.terms["mlm"].num_items, found.terms["mlm"].num_items)


@pytest.mark.slow
def test_compiled_head_has_no_graph_break():
    """The head traced by dynamo on two batches of different widths and mask counts: one graph,
    no break (the data-dependent ``nonzero`` of the label path broke it)."""
    torch.manual_seed(0)
    target = MlmTarget(DIM, VOCAB)
    for seed in (0, 1):
        batch, hidden = batch_and_hidden(seed)
        explained = torch._dynamo.explain(target)(hidden, batch)
        assert explained.graph_break_count == 0, explained.break_reasons
