"""Attention parts: grouped-query attention (Ainslie et al. 2023) against a reference that repeats
the key/value heads, rotary position embeddings (Su et al. 2021) against transformers' LLaMA and
their relative-offset property, and cached incremental decoding with both, chosen from config."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

from uer.config import compose_config, resolve
from uer.layers import MultiHeadAttention, RotaryEmbedding
from uer.layers.kv_cache import KVCache
from uer.models.build import build_model

B, T, D, H, HKV = 2, 6, 24, 4, 2
DH = D // H


def close(actual, expected):
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6 * max(scale, 1.0))


def test_grouped_query_attention_equals_repeated_key_value_heads():
    torch.manual_seed(0)
    attn = MultiHeadAttention(dim=D, num_heads=H, num_kv_heads=HKV).eval()
    assert attn.qkv.weight.shape == ((H + 2 * HKV) * DH, D)
    x = torch.randn(B, T, D)
    keys = torch.ones(B, 1, 1, T, dtype=torch.bool)
    keys[1, ..., -2:] = False
    q, k, v = F.linear(x, attn.qkv.weight, attn.qkv.bias).split((H * DH, HKV * DH, HKV * DH), dim=-1)
    q = q.view(B, T, H, DH).transpose(1, 2)
    k, v = (t.view(B, T, HKV, DH).transpose(1, 2).repeat_interleave(H // HKV, dim=1) for t in (k, v))
    assert torch.equal(k[:, 0], k[:, 1]) and not torch.equal(k[:, 1], k[:, 2])  # heads 0, 1 share kv head 0
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=keys).transpose(1, 2).reshape(B, T, D)
    close(attn(x, keys), attn.out(ref))


def test_grouped_cross_attention_shapes_and_bad_group_count():
    attn = MultiHeadAttention(dim=D, num_heads=H, num_kv_heads=1, cross=True)
    assert attn.kv.weight.shape == (2 * DH, D)
    assert attn(torch.randn(B, T, D), memory=torch.randn(B, 3, D)).shape == (B, T, D)
    with pytest.raises(ValueError, match="not divisible by num_kv_heads 3"):
        MultiHeadAttention(dim=D, num_heads=H, num_kv_heads=3)
    with pytest.raises(ValueError, match="even head_dim"):
        RotaryEmbedding(7)


def test_rotary_matches_transformers_llama():
    torch.manual_seed(1)
    config = LlamaConfig(hidden_size=H * 8, num_attention_heads=H, num_key_value_heads=HKV, head_dim=8)
    q, k = torch.randn(B, H, T, 8), torch.randn(B, HKV, T, 8)
    position_ids = torch.randint(0, 500, (B, T))
    cos, sin = LlamaRotaryEmbedding(config)(q, position_ids)
    expected_q, _ = apply_rotary_pos_emb(q, q, cos, sin)
    expected_k, _ = apply_rotary_pos_emb(k, k, cos, sin)
    actual_q, actual_k = RotaryEmbedding(8, base=config.rope_parameters["rope_theta"])(q, k, position_ids)
    close(actual_q, expected_q)
    close(actual_k, expected_k)


def test_rotary_scores_depend_only_on_the_relative_offset():
    torch.manual_seed(2)
    rotary = RotaryEmbedding(DH)
    q, k = torch.randn(1, 1, 1, DH).expand(1, 1, T, DH), torch.randn(1, 1, 1, DH).expand(1, 1, T, DH)
    positions = torch.arange(T)[None]
    scores = [(lambda a, b: a @ b.transpose(-1, -2))(*rotary(q, k, positions + shift))[0, 0] for shift in (0, 37)]
    close(scores[1], scores[0])  # every position shifted: the same scores
    assert torch.allclose(scores[0].diagonal(1), scores[0][0, 1].expand(T - 1), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(scores[0][0, 1], scores[0][0, 2])  # another offset, another score


def test_cached_decoding_with_rotary_and_gqa_equals_the_full_forward():
    cfg = resolve(compose_config(["+model=gpt2_tiny", "model/encoder/attention=rotary", "model.dim=32",
                                  "model.num_heads=4", "model.encoder.attention.num_kv_heads=2", "model.ffn_dim=48",
                                  "model.vocab_size=64"]))
    encoder = build_model(cfg.model).encoder.eval()
    assert encoder.layers[1].attention.num_kv_heads == 2 and encoder.layers[1].attention.rotary is not None
    torch.manual_seed(3)
    x, mask = torch.randn(B, T, 32), torch.ones(B, T, dtype=torch.bool)
    mask[1, :2] = False  # left padding
    with torch.no_grad():
        full = encoder(x, mask)
        cache = KVCache()
        steps = [encoder(x[:, :3], mask[:, :3], cache=cache)]
        steps += [encoder(x[:, t:t + 1], mask[:, :t + 1], cache=cache) for t in range(3, T)]
        shifted = encoder(x, mask, position_ids=torch.arange(10, 10 + T)[None])
    close(torch.cat(steps, dim=1), full)
    close(shifted, full)  # rotary is relative: positions shifted together change nothing
    assert cache.self_kv[0][0].shape == (B, 2, T, 8)  # the cache keeps the Hkv heads
