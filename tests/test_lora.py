"""LoRA (``model.adapters``): a fresh adapter leaves the base's outputs unchanged and only adapter
parameters train; q/v slices of the fused qkv are exactly LoRA on separate q and v projections;
merging keeps the outputs; bad adapter configs fail in one line; ``uer-pretrain +model/adapters=lora``
trains the adapter alone, writes adapter-only checkpoints that name their base, resumes exactly and
trains under DDP and FSDP2 as in one process."""
from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path

import pytest
import torch
from checks import assert_parity, one_line_error
from omegaconf import OmegaConf
from safetensors.torch import load_file
from test_distributed import torchrun

from uer.config import compose_config, resolve
from uer.convert.load import load_pretrained
from uer.layers.lora import LoRALinear
from uer.models.adapter_checkpoint import BASE_KEY
from uer.models.adapters import adapter_state, load_base, merge_adapters
from uer.models.build import build_model
from uer.models.pretrained import load_config, save_pretrained
from uer.train.checkpoint import list_checkpoints
from uer.train.config import OptimConfig
from uer.train.optim import build_optimizer
from uer.train.run import pretrain

TINY = ["+model=gpt2_tiny", "model.vocab_size=8000", "model.dim=32", "model.num_heads=2", "model.ffn_dim=64",
        "+model.embedding.parts.word.init_std=1.0", "model.dropout=0"]
"""A tiny GPT-2 whose random word table (the tied LM head, frozen under LoRA) is wide enough for the
adapter to move the logits."""


@functools.cache
def composed(*adapters: str):
    return resolve(compose_config([*TINY, *adapters, "model.vocab_size=99"])).model


def tiny(*adapters: str, **changes):
    """The resolved tiny GPT-2 config with 99 tokens (with ``adapters`` overrides, and ``model.adapters``
    ``changes``)."""
    return OmegaConf.merge(composed(*adapters), OmegaConf.create({"adapters": changes}) if changes else {})


def lm_batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(5, 99, (2, 12), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}


def test_a_fresh_adapter_leaves_the_base_unchanged_and_only_it_trains():
    torch.manual_seed(0)
    base = build_model(tiny()).eval()
    model = build_model(tiny("+model/adapters=lora")).eval()
    load_base(model, base.state_dict())
    b = lm_batch()
    assert torch.equal(model(b).loss, base(b).loss)  # B = 0: step 0 is the base, bit for bit
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"encoder.layers.{i}.attention.qkv.lora_{f}.{s}" for i in range(2) for f in "AB" for s in "qv"}
    qkv = model.encoder.layers[0].attention.qkv
    assert not qkv.lora_B["q"].any() and qkv.lora_A["q"].abs().max() <= 1 / math.sqrt(32)  # kaiming-uniform, a=√5
    optimizer = build_optimizer(model, OptimConfig(lr=1e-2))
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {id(p) for n, p in model.named_parameters()
                                                                            if n in trainable}
    model.train()
    for _ in range(3):
        optimizer.zero_grad()
        model(b).loss.backward()
        optimizer.step()
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in model.state_dict().items() if k in base.state_dict())
    assert model.eval()(b).loss < base(b).loss


@pytest.mark.parametrize("rslora", [False, True])
def test_q_and_v_slices_are_lora_on_separate_projections(rslora):
    """Grouped-query sizes: q 24 rows, k and v 8 each; LoRA on q and v only."""
    torch.manual_seed(0)
    fused = LoRALinear(20, 40, slices={"q": (0, 24), "v": (32, 40)}, r=3, alpha=5, rslora=rslora)
    for p in fused.lora_B.values():
        torch.nn.init.normal_(p)
    x = torch.randn(2, 7, 20)
    s = 5 / math.sqrt(3) if rslora else 5 / 3
    w, b = fused.weight, fused.bias
    q = x @ w[:24].T + b[:24] + s * x @ fused.lora_A["q"].T @ fused.lora_B["q"].T
    k = x @ w[24:32].T + b[24:32]
    v = x @ w[32:].T + b[32:] + s * x @ fused.lora_A["v"].T @ fused.lora_B["v"].T
    with torch.no_grad():
        assert_parity(fused(x), torch.cat([q, k, v], -1))
        assert_parity(fused.merged()(x), torch.cat([q, k, v], -1))


def test_merged_model_has_the_adapter_models_logits():
    torch.manual_seed(0)
    model = build_model(tiny("+model/adapters=lora_all")).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.normal_(0, 0.3)
    b = lm_batch()
    expected = model(b).logits["lm"]
    merged = merge_adapters(model)
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    assert_parity(merged(b).logits["lm"], expected)


@pytest.mark.parametrize(("changes", "needle"), [
    ({"lora": {"rank": 4}}, "model.adapters.lora: unknown keys ['rank']"),
    ({"lora": {"r": 0}}, "model.adapters.lora.r=0: must be an integer >= 1"),
    ({"lora": {"target": ["nope"]}}, "chooses no linear layer"),
    ({"lora": {"target": ["("]}}, "neither a role"),
    ({"prefix": {}}, "expected a mapping with one of ['lora']"),
])
def test_bad_adapter_configs_fail_in_one_line(changes, needle):
    one_line_error(lambda: build_model(tiny(**changes)), needle)


def test_a_pattern_chooses_units_by_name():
    model = build_model(tiny(lora={"target": [r"encoder\.layers\.1\.attention\.qkv\.k", r"encoder\..*\.up"]}))
    assert sorted(k.rsplit(".", 1)[0] for k in adapter_state(model) if ".lora_A." in k) == [
        "encoder.layers.0.ffn.up.lora_A", "encoder.layers.1.attention.qkv.lora_A", "encoder.layers.1.ffn.up.lora_A"]


def run_args(corpus: Path, base: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return [*TINY, "+model/adapters=lora_all", "model.adapters.lora.dropout=0", f"trainer.init_from={base}",
            f"trainer.output_dir={out}", f"trainer.max_steps={steps}", "trainer.progress=false", "trainer.eval_every=0",
            "trainer.log_every=1", "data.eval_samples=4", "data.num_proc=1", f"data.corpus={corpus}",
            "data.seq_length=32", "data.batch_size=8", "optim.lr=5e-2", "scheduler=constant", "scheduler.warmup_steps=0",
            "trainer.save_every=4", *extra]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A random tiny GPT-2 checkpoint (the vocabulary of the corpus's trained tokenizer)."""
    torch.manual_seed(1)
    cfg = resolve(compose_config(TINY)).model
    path = tmp_path_factory.mktemp("base") / "base"
    save_pretrained(path, build_model(cfg), OmegaConf.create({"model": cfg}))
    return path


@pytest.mark.slow  # two 8-step training runs
def test_command_line_trains_the_adapter_and_resumes_exactly(base, small_corpus, tmp_path):
    pretrain(compose_config(run_args(small_corpus, base, tmp_path / "a", 8)))
    step = list_checkpoints(tmp_path / "a")[-1]
    assert (step / "adapter_model.safetensors").is_file() and not (step / "model.safetensors").exists()
    losses = [r["loss"] for r in map(json.loads, (tmp_path / "a" / "metrics.jsonl").read_text().splitlines())
              if r["split"] == "train"]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.2, losses
    trained = load_pretrained(step).model
    original = load_pretrained(base).model.state_dict()
    assert all(torch.equal(v, original[k]) for k, v in trained.state_dict().items() if k in original)
    # 4 steps, then resume to 8: the same adapter, bit for bit
    pretrain(compose_config(run_args(small_corpus, base, tmp_path / "b", 4)))
    pretrain(compose_config(run_args(small_corpus, base, tmp_path / "b", 8, "trainer.resume=auto")))
    a, b = (load_file(list_checkpoints(tmp_path / r)[-1] / "adapter_model.safetensors") for r in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # an adapter-only init_from continues the adapter on the same base, which the new checkpoints name
    pretrain(compose_config([*run_args(small_corpus, step, tmp_path / "c", 1)]))
    assert load_config(list_checkpoints(tmp_path / "c")[-1])[BASE_KEY] == load_config(step)[BASE_KEY]


@pytest.mark.slow  # two processes under uer-torchrun, twice
def test_ddp_and_fsdp2_train_the_adapter_as_one_process(base, small_corpus, tmp_path):
    exact = ["optim=sgd", "optim.lr=0.5", "optim.momentum=0", "scheduler=constant", "scheduler.warmup_steps=0"]
    pretrain(compose_config(run_args(small_corpus, base, tmp_path / "one", 3, *exact)))
    one = load_file(list_checkpoints(tmp_path / "one")[-1] / "adapter_model.safetensors")
    for strategy in ("ddp", "fsdp2"):
        done = torchrun(Path(os.environ["UER_CACHE"]), *run_args(small_corpus, base, tmp_path / strategy, 3, *exact,
                                                                  "data.batch_size=4", f"trainer.strategy={strategy}"))
        assert done.returncode == 0, done.stderr[-3000:]
        two = load_file(list_checkpoints(tmp_path / strategy)[-1] / "adapter_model.safetensors")
        assert two.keys() == one.keys()
        for key, value in one.items():
            torch.testing.assert_close(two[key], value, atol=1e-5, rtol=1e-4, msg=f"{strategy}: {key}")
