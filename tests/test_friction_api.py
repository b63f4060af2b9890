"""The README's Python example (section "From Python") runs as written, on a tiny uer checkpoint
(Hugging Face directories go through the same load_pretrained: tests/test_convert*.py)."""
from __future__ import annotations

import re
from pathlib import Path

import torch

from uer.config import compose_config, resolve
from uer.data.tokenizer import Tokenizer
from uer.models.build import build_model
from uer.models.pretrained import save_pretrained

README = Path(__file__).resolve().parents[1] / "README.md"
PLACEHOLDER = 'checkpoint = "outputs/gpt2_tiny/<run>/checkpoints/step_0000030"'


def readme_example() -> str:
    """The python block of the README that loads ``checkpoint`` with ``load_pretrained``."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    return next(b for b in blocks if PLACEHOLDER in b and "load_pretrained(checkpoint)" in b)


def test_readme_python_example_runs_on_a_checkpoint(tmp_path, capsys):
    tokenizer = Tokenizer.load("builtin:kjv-bpe")
    cfg = resolve(compose_config(["+model=gpt2_tiny", "model.dim=24", "model.num_heads=2", "model.ffn_dim=40",
                                  "model.num_layers=1", "model.max_seq_length=64",
                                  f"model.vocab_size={tokenizer.vocab_size}"]))
    torch.manual_seed(0)
    save_pretrained(tmp_path / "uer", build_model(cfg.model), cfg, tokenizer)
    scope = {}
    exec(readme_example().replace(PLACEHOLDER, f"checkpoint = {str(tmp_path / 'uer')!r}"), scope)  # noqa: S102
    assert scope["logits"].shape == (1, scope["batch"]["input_ids"].shape[1], tokenizer.vocab_size)
    assert 1 <= scope["new_ids"].shape[1] <= 20
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 and printed[1].startswith("[") and printed[1].count("', '") == 1, printed
