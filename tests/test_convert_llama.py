"""LLaMA-family conversion (uer/convert/llama.py): Llama, Mistral and Qwen2 with random weights and odd
sizes (grouped-query attention, an explicit head_dim, Llama 3 rope scaling, Qwen2's q/k/v biases and
tied head) give transformers' hidden states, logits, loss and every gradient; conversions are
bit-identical both ways; greedy and beam generation give transformers' tokens with the cache; a
sliding window uer cannot model is refused in one line."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
import transformers
from checks import assert_parity, one_line_error
from convert_cases import hf_config_dict, load_uer, same_tensors
from omegaconf import OmegaConf

from uer.cli.generate import main as generate_main
from uer.config import compose_config, resolve
from uer.convert import convert, engine
from uer.convert.families import FAMILIES
from uer.generation import generate
from uer.models import build_model
from uer.train.checkpoint import load_config, save_checkpoint

COMMON = {"hidden_size": 36, "num_attention_heads": 6, "num_key_value_heads": 2, "intermediate_size": 52,
          "vocab_size": 99, "num_hidden_layers": 3, "max_position_embeddings": 40, "bos_token_id": 1,
          "eos_token_id": 2}
LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500.0, "factor": 4.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 32}
"""With head_dim 8 the four wavelengths (6.3, 30, 140, 660 positions) fall in all three bands."""
CASES = {
    "llama": lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(**COMMON, head_dim=8,
                                                                            rope_parameters=LLAMA3_ROPE)),
    "mistral": lambda: transformers.MistralForCausalLM(transformers.MistralConfig(**COMMON, sliding_window=40)),
    "qwen2": lambda: transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**COMMON, tie_word_embeddings=True)),
}


def tiny_hf(name: str):
    """The tiny HF model ``name`` with every parameter (norms and biases too) randomized."""
    torch.manual_seed(0)
    model = CASES[name]()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """name -> (HF model, its directory, the uer checkpoint converted from it)."""
    out = {}
    for name in CASES:
        root = tmp_path_factory.mktemp(name)
        hf = tiny_hf(name)
        hf.save_pretrained(root / "hf")
        convert(root / "hf", root / "uer")
        out[name] = hf, root
    return out


def batch() -> dict[str, torch.Tensor]:
    """A right-padded batch (lengths 10, 7, 4) with causal-LM labels."""
    g = torch.Generator().manual_seed(1)
    mask = (torch.arange(10)[None] < torch.tensor([[10], [7], [4]])).long()
    ids = torch.randint(5, 99, (3, 10), generator=g).masked_fill(mask == 0, 0)
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


@pytest.mark.parametrize("name", list(CASES))
def test_outputs_loss_and_every_gradient_equal_transformers(converted, name):
    hf, root = converted[name]
    model = load_uer(root / "uer")
    fields = batch()
    real = fields["attention_mask"].bool()
    hidden, _ = model.encode(fields)
    assert_parity(hidden[real], hf.model(input_ids=fields["input_ids"],
                                         attention_mask=fields["attention_mask"]).last_hidden_state[real])
    ref, out = hf(**fields), model(fields)
    assert_parity(out.logits["lm"], ref.logits[:, :-1][fields["labels"][:, 1:] != -100])
    assert_parity(out.loss, ref.loss)
    ref.loss.backward()
    out.loss.backward()
    family = FAMILIES[name]
    head = family.heads[1 if hf.config.tie_word_embeddings else 0]
    hf_grads = {n: p.grad for n, p in hf.named_parameters()}
    ours = dict(model.named_parameters())
    rules = engine.rules_for(family, head, engine.num_layers(OmegaConf.create({"encoder": {"num_layers": 3}})))
    assert {r.uer for r in rules} == set(ours)
    for rule in rules:
        assert_parity(ours[rule.uer].grad, rule.transform.to_uer([hf_grads[n] for n in rule.hf]), msg=rule.uer)


@pytest.mark.parametrize("name", ["llama", pytest.param("mistral", marks=pytest.mark.slow),
                                  pytest.param("qwen2", marks=pytest.mark.slow)])
def test_hf_uer_hf_is_bit_identical_and_loads_cleanly(converted, name, tmp_path):
    _, root = converted[name]
    convert(root / "uer", tmp_path / "back")
    same_tensors(root / "hf" / "model.safetensors", tmp_path / "back" / "model.safetensors")
    assert hf_config_dict(tmp_path / "back") == hf_config_dict(root / "hf")
    model, info = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "back", output_loading_info=True)
    assert type(model).__name__ == json.loads((root / "hf" / "config.json").read_text())["architectures"][0]
    assert not any(info.values()), info
    assert transformers.GenerationConfig.from_pretrained(tmp_path / "back").eos_token_id == 2


@pytest.mark.slow
@pytest.mark.parametrize("preset,architecture", [("llama_tiny", "LlamaForCausalLM"),
                                                 ("qwen2_0_5b", "Qwen2ForCausalLM")])
def test_uer_hf_uer_is_bit_identical(preset, architecture, tmp_path):
    sizes = ["model.vocab_size=99", "model.dim=36", "model.num_heads=6", "model.ffn_dim=52", "model.num_layers=2",
             "model.max_seq_length=64", "model.encoder.attention.num_kv_heads=3"]
    cfg = resolve(compose_config([f"+model={preset}", *sizes]))
    torch.manual_seed(0)
    model = build_model(cfg.model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_checkpoint(tmp_path / "uer", model, cfg, None, None)
    convert(tmp_path / "uer", tmp_path / "hf")
    config = hf_config_dict(tmp_path / "hf")
    assert config["architectures"] == [architecture] and config["num_key_value_heads"] == 3
    assert config["tie_word_embeddings"] == (preset == "qwen2_0_5b")
    _, info = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not any(info.values()), info
    convert(tmp_path / "hf", tmp_path / "back")
    same_tensors(tmp_path / "uer" / "model.safetensors", tmp_path / "back" / "model.safetensors")
    assert OmegaConf.to_container(load_config(tmp_path / "back").model) == OmegaConf.to_container(cfg.model)


def prompts() -> dict[str, torch.Tensor]:
    """Three left-padded prompts of 6, 4 and 2 tokens."""
    g = torch.Generator().manual_seed(3)
    mask = (torch.arange(6) >= torch.tensor([[0], [2], [4]])).long()
    return {"input_ids": torch.randint(3, 99, (3, 6), generator=g).masked_fill(mask == 0, 0), "attention_mask": mask}


@pytest.mark.parametrize("name", ["llama", pytest.param("qwen2", marks=pytest.mark.slow)])
def test_greedy_and_beam_equal_transformers_with_the_cache(converted, name):
    hf, root = converted[name]
    model = load_uer(root / "uer")
    free = hf.generate(**prompts(), max_new_tokens=10, do_sample=False, eos_token_id=None, pad_token_id=0)
    eos = int(free[1, 6 + 4])  # a token a row produces mid-way, so that stopping at EOS is exercised
    for extra in ({}, {"num_beams": 3, "length_penalty": 0.7}):
        expected = hf.generate(**prompts(), max_new_tokens=10, do_sample=False, eos_token_id=eos, pad_token_id=eos,
                               **extra)[:, 6:]
        strategy = "beam" if extra else "greedy"
        ours = generate(model, prompts(), max_new_tokens=10, strategy=strategy, eos_token_id=eos, pad_token_id=eos,
                        **extra)
        assert torch.equal(ours, expected), strategy


def test_sliding_window_shorter_than_the_positions_is_refused(tmp_path):
    torch.manual_seed(0)
    config = transformers.MistralConfig(**{**COMMON, "num_hidden_layers": 1}, sliding_window=16)
    transformers.MistralForCausalLM(config).save_pretrained(tmp_path / "hf")
    one_line_error(lambda: convert(tmp_path / "hf", tmp_path / "uer"), "sliding_window=16",
                   "max_position_embeddings=40", "no sliding window")
    assert not (tmp_path / "uer").exists()


CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
LLAMA2_CHAT = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}"
               "{% else %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}")
TEXTS = ["the quick brown fox jumps over the lazy dog", "a stitch in time saves nine", "all that glitters is gold"]
MESSAGES = [{"role": "user", "content": "the fox"}, {"role": "assistant", "content": "jumps over"},
            {"role": "user", "content": "the dog"}]


def chat_tokenizer(kind: str):
    """A small tokenizer.json of ``kind`` with special tokens and a chat template: ``sentencepiece``
    (Llama 2 style: BPE with a Metaspace pre-tokenizer, <unk> <s> </s>) or ``byte_level`` (Qwen2 style)."""
    from tokenizers import ByteLevelBPETokenizer, SentencePieceBPETokenizer

    if kind == "sentencepiece":
        trained = SentencePieceBPETokenizer()
        trained.train_from_iterator(TEXTS, vocab_size=80, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
        roles, template = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}, LLAMA2_CHAT
    else:
        trained = ByteLevelBPETokenizer()
        trained.train_from_iterator(TEXTS, vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>",
                                                                           "<|im_end|>"], show_progress=False)
        roles, template = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, CHATML
    return transformers.PreTrainedTokenizerFast(tokenizer_object=trained._tokenizer, chat_template=template, **roles)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sentencepiece", "byte_level"])
def test_tokenizers_and_chat_templates_round_trip(converted, kind, tmp_path, capsys):
    from uer.convert import load_pretrained
    from uer.data.chat import render_chat

    _, root = converted["llama"]
    shutil.copytree(root / "hf", tmp_path / "hf")
    reference = chat_tokenizer(kind)
    reference.save_pretrained(tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "uer")
    tokenizer = load_pretrained(tmp_path / "uer").tokenizer
    assert render_chat(MESSAGES, tokenizer, add_generation_prompt=True) == \
        reference.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    convert(tmp_path / "uer", tmp_path / "back")
    back = transformers.AutoTokenizer.from_pretrained(tmp_path / "back")
    assert back.chat_template == reference.chat_template
    for text in TEXTS + ["unseen words: xyz!"]:
        assert back(text)["input_ids"] == reference(text)["input_ids"], text
        assert tokenizer.encode_batch([text])[0] == reference(text, add_special_tokens=False)["input_ids"], text
    if kind == "sentencepiece":  # its 80 tokens fit the model's 99: uer-generate --chat answers as transformers
        hf = converted["llama"][0]
        prompt = reference.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
        ids = torch.tensor([reference(prompt, add_special_tokens=False)["input_ids"]])
        expected = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                               eos_token_id=2, pad_token_id=2)[0, ids.shape[1]:].tolist()
        expected = expected[:expected.index(2)] if 2 in expected else expected
        assert expected  # an answer to compare, not only the end of the turn
        assert generate_main([str(tmp_path / "uer"), "--chat", "--prompt", json.dumps(MESSAGES),
                              "--max-new-tokens", "6"]) == 0
        assert capsys.readouterr().out == " ".join(reference.decode(expected, skip_special_tokens=True).split()) + "\n"
