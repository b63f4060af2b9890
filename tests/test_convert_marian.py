"""uer-convert for the translation Transformer (transformer_base / transformer_tiny) <-> transformers'
MarianMTModel: with random weights, odd sizes and separate source/target vocabularies, the export
computes what uer computes (encoder and decoder states, logits, loss, every gradient) on padded
batches, loads without missing or unexpected tensors, and converts back bit for bit."""
from __future__ import annotations

import pytest
import torch
import transformers
from checks import assert_parity
from convert_cases import gradients, randomized, same_tensors

from uer.config import compose_config, resolve
from uer.convert import convert, engine
from uer.convert.configs import export_head
from uer.data.tokenizer import Tokenizer
from uer.models import build_model
from uer.train.checkpoint import load_config, save_checkpoint

OVERRIDES = ["+model=transformer_tiny", "model.vocab_size=53", "model.tgt_vocab_size=47", "model.dim=36",
             "model.num_heads=4", "model.ffn_dim=52", "model.num_layers=2", "model.num_decoder_layers=3",
             "model.max_seq_length=40"]


def batch() -> dict[str, torch.Tensor]:
    """Right-padded source (lengths 9, 6) and target (7, 4) sides with labels (no pad id inside)."""
    g = torch.Generator().manual_seed(1)
    out = {}
    for prefix, lengths, vocab in (("", [9, 6], 53), ("decoder_", [7, 4], 47)):
        lengths = torch.tensor(lengths)
        mask = (torch.arange(int(lengths.max()))[None] < lengths[:, None]).long()
        out[f"{prefix}input_ids"] = torch.randint(1, vocab, mask.shape, generator=g) * mask
        out[f"{prefix}attention_mask"] = mask
    labels = torch.randint(1, 47, out["decoder_input_ids"].shape, generator=g)
    out["labels"] = labels.masked_fill(out["decoder_attention_mask"] == 0, -100)
    return out


def tokenizer_pair(tmp_path) -> Tokenizer:
    """WordPiece vocabularies of 53 source and 47 target tokens ([PAD] = 0, [SEP] = 3)."""
    sides = []
    for name, size in (("src", 53), ("tgt", 47)):
        words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"{name}{i}" for i in range(size - 5)]
        (tmp_path / f"{name}.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
        sides.append(Tokenizer.load(tmp_path / f"{name}.txt"))
    sides[0].target = sides[1]
    return sides[0]


@pytest.mark.slow
def test_export_matches_marian_and_converts_back(tmp_path):
    cfg = resolve(compose_config(OVERRIDES))
    torch.manual_seed(0)
    model = randomized(build_model(cfg.model))
    save_checkpoint(tmp_path / "uer", model, cfg, tokenizer_pair(tmp_path), None)
    convert(tmp_path / "uer", tmp_path / "hf")
    hf, info = transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert isinstance(hf, transformers.MarianMTModel) and not any(info.values()), info
    assert (hf.config.decoder_start_token_id, hf.config.eos_token_id, hf.config.pad_token_id) == (3, 3, 0)
    hf.eval(), model.eval()
    fields = batch()
    ref, out = hf(**fields, output_hidden_states=True), model(fields)
    real = {"src": fields["attention_mask"].bool(), "tgt": fields["decoder_attention_mask"].bool(),
            "labels": fields["labels"] != -100}
    with torch.no_grad():
        memory, mask = model.encode(fields)
        states = {"encoder": (memory, ref.encoder_last_hidden_state, "src"),
                  "decoder": (model.decode(fields, memory, mask), ref.decoder_hidden_states[-1], "tgt")}
    for name, (ours, theirs, where) in states.items():
        assert_parity(ours[real[where]], theirs[real[where]], msg=name)
    assert_parity(out.logits["lm"], ref.logits[real["labels"]])
    assert_parity(out.loss, ref.loss)
    out.loss.backward()
    ref.loss.backward()
    family, head = export_head(cfg.model, "MarianMTModel", None)
    ours, _ = engine.to_hf(family, head, gradients(model), engine.num_layers(cfg.model))
    # the sinusoid tables are constants (uer's buffers); transformers 5.24's from_pretrained leaves them
    # trainable, even for its own saves, so only they differ
    theirs = {n: p.grad for n, p in hf.named_parameters() if p.requires_grad and "embed_positions" not in n}
    assert set(theirs) <= set(ours)
    scale = max(1.0, max(g.abs().max().item() for g in theirs.values()))
    for name, grad in theirs.items():
        torch.testing.assert_close(ours[name], grad, rtol=1e-4, atol=1e-5 * scale, msg=name)
    convert(tmp_path / "hf", tmp_path / "back")
    same_tensors(tmp_path / "uer" / "model.safetensors", tmp_path / "back" / "model.safetensors")
    assert load_config(tmp_path / "back").model == load_config(tmp_path / "uer").model
