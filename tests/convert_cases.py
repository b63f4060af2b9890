"""Tiny, deliberately odd-sized models of every converted family and head, the padded batches to
compare them on, and the helpers the conversion tests share."""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from checks import PARITY_ATOL, PARITY_RTOL
from safetensors.torch import load_file

from uer.config import compose_config, resolve
from uer.convert import engine
from uer.convert.configs import export_head
from uer.models import build_model
from uer.models.pretrained import load_model
from uer.train.checkpoint import load_config, save_checkpoint

SIZES = {"hidden_size": 36, "num_attention_heads": 4, "intermediate_size": 52, "vocab_size": 99, "num_hidden_layers": 3}
SPECIALS = {  # role -> token; the ids are the positions in each list
    "bert": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
    "roberta": ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    "albert": ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"],
    "gpt2": ["<|endoftext|>"],
    "t5": ["<pad>", "</s>", "<unk>"],
    "pegasus": ["<pad>", "</s>", "<unk>"],
    "bart": ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
}
ROLES = {"[PAD]": "pad", "[UNK]": "unk", "[CLS]": "cls", "[SEP]": "sep", "[MASK]": "mask", "<s>": "cls",
         "<pad>": "pad", "</s>": "sep", "<unk>": "unk", "<mask>": "mask"}


@dataclass(frozen=True)
class Case:
    """One HF architecture: how to build it tiny, and its batch fields."""

    family: str
    architecture: str
    auto_class: str

    @property
    def pad_id(self) -> int:
        return 1 if self.family == "roberta" else 0


CASES = [
    Case("bert", "BertForPreTraining", "AutoModelForPreTraining"),
    Case("bert", "BertForMaskedLM", "AutoModelForMaskedLM"),
    Case("bert", "BertModel", "AutoModel"),
    Case("roberta", "RobertaForMaskedLM", "AutoModelForMaskedLM"),
    Case("albert", "AlbertForPreTraining", "AutoModelForPreTraining"),
    Case("albert", "AlbertForMaskedLM", "AutoModelForMaskedLM"),
    Case("gpt2", "GPT2LMHeadModel", "AutoModelForCausalLM"),
    Case("vit", "ViTForImageClassification", "AutoModelForImageClassification"),
    Case("vit", "ViTModel", "AutoModel"),
]


def hf_config(case: Case) -> transformers.PretrainedConfig:
    if case.family == "gpt2":
        return transformers.GPT2Config(n_embd=36, n_head=4, n_inner=52, vocab_size=99, n_layer=3, n_positions=40,
                                       bos_token_id=0, eos_token_id=0)
    if case.family == "vit":
        sizes = {k: v for k, v in SIZES.items() if k != "vocab_size"}
        return transformers.ViTConfig(**sizes, image_size=12, patch_size=4, num_labels=5)
    if case.family == "roberta":
        return transformers.RobertaConfig(**SIZES, max_position_embeddings=40, type_vocab_size=1, layer_norm_eps=1e-5)
    if case.family == "albert":
        return transformers.AlbertConfig(**SIZES, embedding_size=20, max_position_embeddings=40)
    return transformers.BertConfig(**SIZES, max_position_embeddings=40, hidden_act="gelu_new")


def tiny_hf_model(case: Case, seed: int = 0):
    """The HF model of ``case`` with every parameter randomized (biases and norms too, so that a
    mapping that mixed them up could not pass)."""
    torch.manual_seed(seed)
    return randomized(getattr(transformers, case.architecture)(hf_config(case))).eval()


def randomized(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with N(0, 0.05²) noise added to every parameter (biases and norms too, so that a
    mapping that mixed them up could not pass), in place, from torch's global generator."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def save_random_uer(directory: Path, overrides: list[str], tokenizer=None):
    """The uer model that ``compose_config(overrides)`` builds, seeded with 0 and
    :func:`randomized`, saved as a checkpoint in ``directory``; returns the model in eval mode."""
    cfg = resolve(compose_config(overrides))
    torch.manual_seed(0)
    model = randomized(build_model(cfg.model))
    save_checkpoint(directory, model, cfg, tokenizer, None)
    return model.eval()


def gradients(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` holding its parameters' gradients (zeros where a parameter got none)."""
    grads = copy.deepcopy(model)
    for p, g in zip(grads.parameters(), model.parameters(), strict=True):
        p.data = torch.zeros_like(g) if g.grad is None else g.grad.clone()
    return grads


def assert_gradients_match(hf: torch.nn.Module, model: torch.nn.Module, checkpoint: Path, architecture: str,
                           scratch: Path) -> None:
    """After backward on both, the gradients of the uer ``model`` (read from ``checkpoint``), mapped
    to ``architecture``'s tensor names, equal those of the HF model ``hf`` (saved under ``scratch``),
    tensor by tensor, with the parity tolerances scaled by the largest gradient."""
    gradients(hf).save_pretrained(scratch)
    expected = load_file(str(Path(scratch) / "model.safetensors"))
    model_cfg = resolve(load_config(checkpoint).model)
    family, head = export_head(model_cfg, architecture, None)
    actual, _ = engine.to_hf(family, head, gradients(model), engine.num_layers(model_cfg))
    assert actual.keys() == expected.keys()
    scale = max(1.0, max(g.abs().max().item() for g in expected.values()))
    for name, grad in expected.items():
        torch.testing.assert_close(actual[name], grad, atol=PARITY_ATOL * scale, rtol=PARITY_RTOL, msg=name)


def save_hf(case: Case, directory: Path, seed: int = 0):
    """Write the tiny HF model and (text models) a 99-token tokenizer; returns the model."""
    model = tiny_hf_model(case, seed)
    model.save_pretrained(directory)
    if case.family != "vit":
        hf_tokenizer(case.family).save_pretrained(directory)
    return model


def hf_tokenizer(family: str):
    from tokenizers import Tokenizer, models, pre_tokenizers

    specials = SPECIALS[family]
    vocab = {t: i for i, t in enumerate(specials + [f"w{i}" for i in range(len(specials), 99)])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=specials[1] if len(specials) > 1 else specials[0]))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    if family == "gpt2":
        roles = {"bos_token": specials[0], "eos_token": specials[0], "unk_token": specials[0]}
    elif family in ("t5", "pegasus"):
        roles = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
    elif family == "bart":
        roles = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
                 "mask_token": "<mask>"}
    else:
        roles = {f"{ROLES[t]}_token": t for t in specials}
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, **roles)


def batch(case: Case, seed: int = 1) -> dict[str, torch.Tensor]:
    """A right-padded batch (lengths 10, 7, 4) with labels for the case's head, uer field names."""
    g = torch.Generator().manual_seed(seed)
    if case.family == "vit":
        return {"pixel_values": torch.randn(3, 3, 12, 12, generator=g), "labels": torch.tensor([0, 3, 4])}
    lengths = torch.tensor([10, 7, 4])
    mask = (torch.arange(10)[None] < lengths[:, None]).long()
    ids = torch.randint(5, 99, (3, 10), generator=g).masked_fill(mask == 0, case.pad_id)
    out = {"input_ids": ids, "attention_mask": mask}
    if case.family == "gpt2":
        out["labels"] = ids.masked_fill(mask == 0, -100)
        return out
    chosen = (torch.rand(3, 10, generator=g) < 0.3) | (torch.arange(10) == 1)
    out["labels"] = ids.masked_fill(~chosen.bool() | (mask == 0), -100)
    if case.family != "roberta":
        out["token_type_ids"] = ((torch.arange(10)[None] >= lengths[:, None] // 2) & (mask == 1)).long()
    if case.architecture.endswith("PreTraining"):
        out["next_sentence_label"] = torch.tensor([0, 1, 1])
    return out


def hf_inputs(case: Case, fields: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch under the names the HF model expects."""
    out = dict(fields)
    if case.architecture == "AlbertForPreTraining":
        out["sentence_order_label"] = out.pop("next_sentence_label")
    if case.architecture in ("BertModel", "ViTModel"):
        out.pop("labels", None)
    return out


def load_uer(directory: Path):
    """The uer model of a checkpoint directory, strictly loaded, in eval mode."""
    return load_model(directory)[0]


def same_tensors(a: Path, b: Path) -> None:
    """Assert two safetensors files hold the same names, dtypes and bits."""
    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys()
    for key in ta:
        assert ta[key].dtype == tb[key].dtype and torch.equal(ta[key], tb[key]), key


def hf_config_dict(directory: Path) -> dict:
    config = json.loads((Path(directory) / "config.json").read_text())
    config.pop("transformers_version", None)
    return config
