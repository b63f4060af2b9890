"""Encoder-decoder and incremental-decoding behaviour of the model parts: cached step-by-step decoding
equals one full forward, the prefix attention pattern, T5's buckets and the sinusoid table against
the references, weight sharing as declared, and every tiny seq2seq preset learns a toy batch."""
from __future__ import annotations

import pytest
import torch
from transformers.models.pegasus.modeling_pegasus import PegasusSinusoidalPositionalEmbedding
from transformers.models.t5.modeling_t5 import T5Attention

from uer.config import compose_config, resolve
from uer.embeddings.sinusoidal import sinusoid_table
from uer.layers.kv_cache import KVCache
from uer.layers.relative_position import relative_position_bucket
from uer.models import build_model

V = 61


def tiny(preset: str, *extra: str):
    torch.manual_seed(0)
    model = build_model(resolve(compose_config([f"+model={preset}", f"model.vocab_size={V}", *extra])).model)
    with torch.no_grad():  # move off the init so that biases and norms matter
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def padded(lengths: list[int], seed: int, prefix: str = "") -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = (torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]).long()
    ids = torch.randint(3, V, mask.shape, generator=g).masked_fill(mask == 0, 0)
    return {f"{prefix}input_ids": ids, f"{prefix}attention_mask": mask}


@pytest.mark.parametrize("preset", ["t5_tiny", "bart_tiny", "transformer_tiny", "pegasus_base"])
def test_cached_decoding_matches_full_forward(preset):
    extra = ("model.dim=32", "model.num_heads=4", "model.num_layers=2", "model.ffn_dim=40", "model.max_seq_length=64") \
        if preset == "pegasus_base" else ()
    model = tiny(preset, *extra)
    fields = {**padded([9, 5], 1), **padded([7, 7], 2, "decoder_")}
    fields["decoder_attention_mask"][1, 0] = 0  # a masked target position must stay masked in the cache
    with torch.no_grad():
        memory, mask = model.encode(fields)
        full = model.logits(model.decode(fields, memory, mask))
        cache, steps = KVCache(), []
        for t in range(7):
            step = {"decoder_input_ids": fields["decoder_input_ids"][:, t:t + 1],
                    "decoder_attention_mask": fields["decoder_attention_mask"][:, :t + 1]}
            steps.append(model.logits(model.decode(step, memory, mask, cache=cache)))
            assert cache.length == t + 1
    torch.testing.assert_close(torch.cat(steps, 1)[1, 1:], full[1, 1:], atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cat(steps, 1)[0], full[0], atol=1e-5, rtol=0)


def test_cached_causal_encoder_matches_full_forward_and_reorders():
    model = tiny("gpt2_tiny", "model.dim=32", "model.num_heads=4")
    fields = padded([8, 8, 8], 3)
    with torch.no_grad():
        full = model.logits(model.encode(fields)[0])
        cache = KVCache()
        first, _ = model.encode({k: v[:, :5] for k, v in fields.items()}, cache=cache)  # a 5-token prompt
        cache.reorder(torch.tensor([2, 0, 1]))  # beam search keeps rows in a new order
        rest = []
        for t in range(5, 8):
            step = {"input_ids": fields["input_ids"][[2, 0, 1], t:t + 1],
                    "attention_mask": fields["attention_mask"][[2, 0, 1], :t + 1]}
            rest.append(model.logits(model.encode(step, cache=cache)[0]))
    torch.testing.assert_close(model.logits(first), full[:, :5], atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cat(rest, 1), full[[2, 0, 1], 5:], atol=1e-5, rtol=0)


def test_prefix_pattern_source_bidirectional_target_causal():
    model = tiny("gpt2_tiny", "model.encoder.mask=prefix", "model.dim=32", "model.num_heads=4")
    ids = torch.randint(3, V, (1, 8))
    types = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1]])
    base = {"input_ids": ids, "token_type_ids": types, "attention_mask": torch.ones(1, 8, dtype=torch.long)}
    with torch.no_grad():
        hidden, _ = model.encode(base)
        changed_src = ids.clone()
        changed_src[0, 3] = (ids[0, 3] + 1 - 3) % (V - 3) + 3  # a later source token
        h_src, _ = model.encode({**base, "input_ids": changed_src})
        changed_tgt = ids.clone()
        changed_tgt[0, 6] = (ids[0, 6] + 1 - 3) % (V - 3) + 3  # a later target token
        h_tgt, _ = model.encode({**base, "input_ids": changed_tgt})
    assert not torch.allclose(h_src[0, 0], hidden[0, 0])  # source position 0 sees source position 3
    torch.testing.assert_close(h_tgt[0, :6], hidden[0, :6])  # nothing before position 6 sees it
    assert not torch.allclose(h_tgt[0, 7], hidden[0, 7])
    with torch.no_grad():  # generation: the source in one call, then target tokens one by one
        cache = KVCache()
        steps = [model.encode({k: v[:, :4] for k, v in base.items()}, cache=cache)[0]]
        for t in range(4, 8):
            steps.append(model.encode({"input_ids": ids[:, t:t + 1], "attention_mask": base["attention_mask"][:, :t + 1]},
                                      cache=cache)[0])
    torch.testing.assert_close(torch.cat(steps, 1), hidden, atol=1e-5, rtol=0)
    labels = ids.masked_fill(types == 0, -100)  # the data contract: loss on the target only
    out = model({**base, "labels": labels})
    assert out.terms["lm"].num_items == 4  # targets at 4..7 predicted from positions 3..6


def test_t5_buckets_and_sinusoids_match_the_references():
    rel = torch.arange(-300, 300)[None, :]
    for bidirectional in (True, False):
        for buckets, distance in ((32, 128), (8, 12)):
            ref = T5Attention._relative_position_bucket(rel, bidirectional, buckets, distance)
            assert torch.equal(relative_position_bucket(rel, bidirectional, buckets, distance), ref)
    for n, d in ((50, 36), (20, 35)):
        assert torch.equal(sinusoid_table(n, d), PegasusSinusoidalPositionalEmbedding(n, d).create_weight())


def test_declared_sharing_and_shapes():
    t5 = tiny("t5_tiny")
    assert t5.tgt_embedding.word.weight is t5.embedding.word.weight is t5.target.lm.decoder.weight
    v11 = tiny("t5_v1_1_small", "model.dim=48", "model.num_layers=1", "model.ffn_dim=32", "model.encoder.attention.head_dim=16")
    assert v11.target.lm.decoder.weight is not v11.embedding.word.weight
    assert v11.encoder.layers[0].attention.qkv.weight.shape == (3 * 6 * 16, 48)
    assert v11.decoder.layers[0].cross_attention.kv.weight.shape == (2 * 6 * 16, 48)
    mt = tiny("transformer_tiny", "model.tgt_vocab_size=23")
    assert mt.tgt_embedding.word.weight.shape == (23, 64) and mt.embedding.word.weight.shape == (V, 64)
    assert mt.target.lm.decoder.weight is mt.tgt_embedding.word.weight
    bart = tiny("bart_tiny")
    assert bart.tgt_embedding.position.offset == 2 and bart.tgt_embedding.norm is not None


@pytest.mark.parametrize("preset", ["t5_tiny", "bart_tiny", "transformer_tiny"])
def test_tiny_preset_learns_a_seq2seq_batch(preset):
    """Copy task on a hand-made batch: the loss falls clearly within a few steps."""
    torch.manual_seed(0)
    model = build_model(resolve(compose_config([f"+model={preset}", f"model.vocab_size={V}"])).model).train()
    fields = {**padded([10, 8, 6, 10], 5), **padded([9, 9, 7, 9], 6, "decoder_")}
    fields["labels"] = torch.cat([fields["decoder_input_ids"][:, 1:], torch.ones(4, 1, dtype=torch.long)], 1)
    fields["labels"] = fields["labels"].masked_fill(fields["decoder_attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = model(fields).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.7 * losses[0], losses
