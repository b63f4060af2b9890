"""Two-tower models: a dual embedding, a dual encoder and a two-stream target pass a typed
:class:`~uer.layers.streams.TwoStreams` value; each stream equals that stream run alone."""
from __future__ import annotations

import pytest
import torch

from uer.config import compose_config, resolve
from uer.embeddings import DualEmbedding, Embedding, WordEmbedding
from uer.encoders import DualEncoder
from uer.layers.streams import Stream, TwoStreams
from uer.models import Model, build_model
from uer.targets import CosineTarget, Targets

V = 41


def sbert() -> Model:
    """bert_tiny as SBERT: one shared embedding and encoder for sentences A and B, cosine target."""
    torch.manual_seed(0)
    cfg = resolve(compose_config(["+model=bert_tiny", f"model.vocab_size={V}", "model/embedding=dual_text",
                                  "model/encoder=dual", "model/target=cosine"]))
    return build_model(cfg.model)


def sentence(lengths: list[int], seed: int, prefix: str = "") -> dict[str, torch.Tensor]:
    mask = (torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]).long()
    ids = torch.randint(3, V, mask.shape, generator=torch.Generator().manual_seed(seed)).masked_fill(mask == 0, 0)
    return {f"{prefix}input_ids": ids, f"{prefix}attention_mask": mask}


def pairs() -> dict[str, torch.Tensor]:
    return {**sentence([6, 2, 4], 1), **sentence([3, 5, 5], 2, "b_"), "labels": torch.tensor([0.9, -0.2, 0.4])}


def test_sbert_builds_from_config_and_trains():
    model = sbert()
    assert isinstance(model.embedding, DualEmbedding) and isinstance(model.encoder, DualEncoder)
    names = {n for n, _ in model.named_parameters()}
    assert "embedding.first.word.weight" in names and any(n.startswith("encoder.first.layers.1.") for n in names)
    assert not any(n.startswith(("embedding.second", "encoder.second")) for n in names)  # shared: one set
    out = model(pairs())
    assert out.loss.ndim == 0 and torch.isfinite(out.loss) and out.logits["cosine"].shape == (3,)
    out.loss.backward()
    assert model.embedding.first.word.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_each_stream_equals_that_stream_alone():
    model = sbert().eval()
    batch = pairs()
    hidden, mask = model.encode(batch)
    assert isinstance(hidden, TwoStreams) and mask is None
    tower, encoder = model.embedding.first, model.encoder.first
    for stream, alone in ((hidden.first, sentence([6, 2, 4], 1)), (hidden.second, sentence([3, 5, 5], 2))):
        x, m = tower(alone)
        torch.testing.assert_close(stream.x, encoder(x, m), rtol=0, atol=0)
        assert torch.equal(stream.mask, alone["attention_mask"].bool())


class Project(torch.nn.Module):
    """Test-only single-stream encoder: forward(x (B, S, D), mask) -> x W^T (B, S, D_out)."""

    def __init__(self, dim: int, out: int):
        super().__init__()
        self.linear = torch.nn.Linear(dim, out)

    def forward(self, x, mask=None):
        return self.linear(x)


def test_separate_towers_have_their_own_weights_and_widths():
    text = Embedding({"word": WordEmbedding(V, 8)}, 8, dropout=0.0)
    other = Embedding({"word": WordEmbedding(V, 6)}, 6, dropout=0.0)
    model = Model(DualEmbedding(text, other, second_prefix="b_"), DualEncoder(Project(8, 4), Project(6, 4)),
                  Targets(cosine=CosineTarget()))
    names = {n for n, _ in model.named_parameters()}
    assert {"embedding.first.word.weight", "embedding.second.word.weight", "encoder.first.linear.weight",
            "encoder.second.linear.weight"} <= names
    hidden, _ = model.encode(pairs())
    assert hidden.first.x.shape == (3, 6, 4) and hidden.second.x.shape == (3, 5, 4)
    torch.testing.assert_close(hidden.second.x, model.encoder.second(other(sentence([3, 5, 5], 2))[0]),
                               rtol=0, atol=0)
    model(pairs()).loss.backward()
    assert text.word.weight.grad.abs().sum() > 0 and other.word.weight.grad.abs().sum() > 0


def test_mismatched_parts_are_one_line_errors():
    model = sbert()
    with pytest.raises(TypeError, match="takes TwoStreams"):
        model.encoder(torch.zeros(1, 2, 128), None)
    with pytest.raises(ValueError, match="no shared mask or context"):
        model.encoder(model.embedding(pairs())[0], None, position_ids=torch.zeros(3, 6, dtype=torch.long))
    with pytest.raises(TypeError, match="compares two streams"):
        CosineTarget()(torch.zeros(3, 2, 4), pairs())
    with pytest.raises(ValueError, match="different prefixes"):
        DualEmbedding(Embedding({"word": WordEmbedding(V, 8)}, 8))
    with pytest.raises(TypeError, match="must be a Stream"):
        TwoStreams((torch.zeros(2, 3, 4), None), Stream(torch.zeros(2, 3, 4), None))
    with pytest.raises(ValueError, match="batch sizes"):
        TwoStreams(Stream(torch.zeros(2, 3, 4), None), Stream(torch.zeros(3, 3, 4), None))
