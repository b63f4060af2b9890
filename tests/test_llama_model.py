"""The LLaMA-family model parts: Llama 3 rope frequency scaling equals transformers', the published
presets count their parameters on the meta device (``uer-pretrain +model=... --info``) as the
transformers models of their exported configs do, and the KV cache keeps only the kv heads."""
from __future__ import annotations

import pytest
import torch
import transformers
from checks import one_line_error
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from uer.cli.generate import main as generate_main
from uer.cli.pretrain import main as pretrain_main
from uer.config import compose_config, resolve
from uer.convert.configs import export_head, hf_config_for
from uer.layers import RotaryEmbedding
from uer.layers.kv_cache import KVCache
from uer.models import build_model
from uer.models.info import parameter_counts

LLAMA31_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
PUBLISHED = {"llama3_8b": 8_030_261_248, "llama2_7b": 6_738_415_616, "qwen2_0_5b": 494_032_768,
             "mistral_7b": 7_241_732_096}


def test_llama3_rope_scaling_equals_transformers():
    config = transformers.LlamaConfig(hidden_size=4096, num_attention_heads=32, max_position_embeddings=131072,
                                      rope_parameters=LLAMA31_ROPE)
    expected, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    options = {k: v for k, v in LLAMA31_ROPE.items() if k not in ("rope_type", "rope_theta")}
    rotary = RotaryEmbedding(128, base=500000.0, scaling="llama3", **options)
    torch.testing.assert_close(rotary.inv_freq, expected, rtol=1e-6, atol=0)
    plain = RotaryEmbedding(128, base=500000.0).inv_freq
    assert torch.equal(rotary.inv_freq[:8], plain[:8]) and torch.equal(rotary.inv_freq[-8:], plain[-8:] / 8)


@pytest.mark.parametrize("options,needle", [({"scaling": "yarn"}, "unknown rotary scaling 'yarn'"),
                                            ({"scaling": "llama3", "factor": 8.0}, "needs low_freq_factor > 0"),
                                            ({"scaling": "llama3", "factor": 8.0, "low_freq_factor": 4.0,
                                              "high_freq_factor": 1.0, "original_max_position_embeddings": 8},
                                             "high_freq_factor > low_freq_factor")])
def test_bad_rope_scaling_is_one_clear_line(options, needle):
    with pytest.raises(ValueError, match=needle):
        RotaryEmbedding(8, **options)


@pytest.mark.slow
@pytest.mark.parametrize("preset", list(PUBLISHED))
def test_published_presets_count_as_transformers_models_of_their_exported_configs(preset):
    model_cfg = resolve(compose_config([f"+model={preset}"])).model
    assert parameter_counts(model_cfg)["total"] == PUBLISHED[preset]
    family, head = export_head(model_cfg, None, None)
    config = hf_config_for(family, head, model_cfg, {}, None, torch.float32)
    with torch.device("meta"):
        reference = getattr(transformers, head.architecture)(config)
    assert reference.num_parameters() == PUBLISHED[preset]


def test_info_prints_the_count_and_needs_a_vocabulary_size(capsys):
    assert pretrain_main(["+model=llama3_8b", "--info"]) == 0
    out = capsys.readouterr().out
    assert "model llama3_8b: 8,030,261,248 parameters" in out and "encoder: 6,979,588,096" in out
    assert pretrain_main(["+model=llama_tiny", "--info"]) == 2
    assert "model.vocab_size is null" in capsys.readouterr().err
    one_line_error(lambda: parameter_counts(resolve(compose_config(["+model=llama_mini"])).model), "vocab_size")


def test_kv_cache_keeps_only_the_kv_heads():
    cfg = resolve(compose_config(["+model=llama_tiny", "model.vocab_size=50"]))
    model = build_model(cfg.model).eval()
    cache = KVCache()
    with torch.no_grad():
        model.encode({"input_ids": torch.tensor([[3, 4, 5]])}, cache=cache)
        model.encode({"input_ids": torch.tensor([[6]])}, cache=cache)
    k, v = cache.self_kv[0]
    assert k.shape == v.shape == (1, 2, 4, 16)  # Hkv = 2 of 4 heads, 4 positions, Dh = 64 / 4


@pytest.mark.parametrize("prompt,needle", [('[{"role": "user"', "--chat prompt 1: invalid JSON"),
                                           ('[{"role": "user", "content": 3}]', "--chat prompt 1: expected a list")])
def test_a_bad_chat_prompt_is_one_line(prompt, needle, capsys, tmp_path):
    assert generate_main([str(tmp_path), "--chat", "--prompt", prompt]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {needle}") and err.count("\n") == 1, err
