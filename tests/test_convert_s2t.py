"""uer-convert for S2T (``Speech2TextForConditionalGeneration``): parity with transformers on a padded
batch of filter banks (encoder and decoder hidden states, logits, loss, every gradient), greedy and
beam ``generate`` tokens, and bit-identical round trips in both directions that load with
``AutoModelForSpeechSeq2Seq`` and ``AutoFeatureExtractor``."""
from __future__ import annotations

import json

import pytest
import sentencepiece
import torch
import transformers
from checks import assert_parity
from convert_cases import hf_config_dict, load_uer, same_tensors
from tokenizers import Tokenizer as Backend
from tokenizers import models, pre_tokenizers

from uer.config import compose_config, resolve
from uer.convert import convert, engine
from uer.convert.files import read_hf_tokenizer
from uer.convert.s2t import FAMILY
from uer.data.tokenizer import Tokenizer
from uer.generation.generate import generate
from uer.models import build_model
from uer.train.checkpoint import load_config, save_checkpoint

V, BINS, PAD, EOS = 41, 13, 1, 2
CONFIG = {"vocab_size": V, "d_model": 36, "encoder_layers": 3, "decoder_layers": 2, "encoder_attention_heads": 4,
          "decoder_attention_heads": 2, "encoder_ffn_dim": 52, "decoder_ffn_dim": 44, "conv_channels": 22,
          "input_feat_per_channel": BINS, "conv_kernel_sizes": [5, 3], "max_source_positions": 40,
          "max_target_positions": 30}


def tokenizer():
    """A WordLevel tokenizer with Speech2TextTokenizer's specials (<s> 0, <pad> 1, </s> 2, <unk> 3)."""
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    backend = Backend(models.WordLevel({t: i for i, t in enumerate(specials + [f"c{i}" for i in range(4, V)])},
                                       unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", pad_token="<pad>",
                                                eos_token="</s>", unk_token="<unk>")


def tiny_hf(seed: int = 0):
    """Random weights far from the initialization: with small ones a tied-head decoder repeats its
    last token, and generation would test nothing. The pad row stays zero (never generated: Hugging
    Face numbers positions by counting non-pad tokens, uer by counting tokens)."""
    torch.manual_seed(seed)
    model = transformers.Speech2TextForConditionalGeneration(transformers.Speech2TextConfig(**CONFIG))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        model.model.decoder.embed_tokens.weight.normal_(std=0.3)[PAD] = 0
        model.model.decoder.layer_norm.weight.normal_()
    return model.eval()


@pytest.fixture(scope="module")
def s2t(tmp_path_factory):
    """(the HF model, its uer conversion, the work directory)."""
    root = tmp_path_factory.mktemp("s2t")
    hf = tiny_hf()
    hf.save_pretrained(root / "hf")
    tokenizer().save_pretrained(root / "hf")
    convert(root / "hf", root / "uer")
    return hf, load_uer(root / "uer"), root


def features(lengths: list[int], seed: int) -> dict[str, torch.Tensor]:
    """Right-padded filter banks (zeros after each utterance, as the feature extractor pads)."""
    mask = (torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]).long()
    values = torch.randn(len(lengths), max(lengths), BINS, generator=torch.Generator().manual_seed(seed))
    return {"input_features": values * mask[..., None], "attention_mask": mask}


def batch() -> dict[str, torch.Tensor]:
    """Utterances of 23, 16 and 9 frames (6, 4, 3 after subsampling), targets of 6, 5 and 3 tokens."""
    g = torch.Generator().manual_seed(1)
    mask = (torch.arange(6)[None] < torch.tensor([[6], [5], [3]])).long()
    ids = torch.randint(3, V, (3, 6), generator=g).masked_fill(mask == 0, PAD)
    labels = torch.randint(3, V, (3, 6), generator=g).masked_fill(mask == 0, -100)
    return {**features([23, 16, 9], seed=2), "decoder_input_ids": ids, "decoder_attention_mask": mask, "labels": labels}


def test_parity_with_transformers(s2t):
    hf, model, _ = s2t
    fields = batch()
    ref = hf(**fields, output_hidden_states=True)
    memory, mask = model.encode(fields)
    hidden = model.decode(fields, memory, mask)
    out = model(fields)
    assert mask.sum(-1).tolist() == [6, 4, 3]
    tgt = fields["decoder_attention_mask"].bool()
    with torch.no_grad():
        assert_parity(memory[mask], ref.encoder_last_hidden_state[mask])
        assert_parity(hidden[tgt], ref.decoder_hidden_states[-1][tgt])
        assert_parity(model.logits(hidden)[tgt], ref.logits[tgt])
        assert_parity(out.logits["lm"], ref.logits[fields["labels"] != -100])
        assert_parity(out.loss, ref.loss)
    out.loss.backward()
    ref.loss.backward()
    hf_grads = {name: p.grad for name, p in hf.named_parameters()}
    uer_params = dict(model.named_parameters())
    rules = engine.rules_for(FAMILY, FAMILY.heads[0], engine.num_layers(load_config(s2t[2] / "uer").model))
    for rule in rules:  # every parameter, mapped through the spec's own transforms
        assert_parity(uer_params[rule.uer].grad, rule.transform.to_uer([hf_grads[n] for n in rule.hf]), msg=rule.uer)
    model.zero_grad(), hf.zero_grad()


def sources() -> dict[str, torch.Tensor]:
    return features([23, 16, 9], seed=3)


def test_greedy_generate_equals_transformers(s2t):
    hf, model, _ = s2t
    common = {"max_new_tokens": 6, "decoder_start_token_id": EOS}
    expected = hf.generate(**sources(), do_sample=False, forced_eos_token_id=None, eos_token_id=None, **common)[:, 1:]
    assert len(set(expected.flatten().tolist())) > 3 and PAD not in expected.tolist()  # not a degenerate model
    assert torch.equal(generate(model, sources(), eos_token_id=None, **common), expected)


@pytest.mark.slow
def test_beam_and_eos_stopping_equal_transformers(s2t):
    hf, model, _ = s2t
    common = {"max_new_tokens": 8, "decoder_start_token_id": EOS}
    free = hf.generate(**sources(), do_sample=False, forced_eos_token_id=None, eos_token_id=None, **common)
    eos = int(free[0, 4])  # a token a row produces mid-way, so that EOS stopping is exercised
    options = {"eos_token_id": eos, "pad_token_id": eos, **common}
    for strategy, extra in [("greedy", {}), ("beam", {"num_beams": 3, "length_penalty": 0.7})]:
        expected = hf.generate(**sources(), do_sample=False, forced_eos_token_id=None, **extra, **options)[:, 1:]
        assert torch.equal(generate(model, sources(), strategy=strategy, **extra, **options), expected), strategy


def test_hf_uer_hf_is_bit_identical_and_loads_with_auto_classes(s2t):
    _, _, root = s2t
    convert(root / "uer", root / "back")
    same_tensors(root / "hf" / "model.safetensors", root / "back" / "model.safetensors")
    assert hf_config_dict(root / "back") == hf_config_dict(root / "hf")
    model, info = transformers.AutoModelForSpeechSeq2Seq.from_pretrained(root / "back", output_loading_info=True)
    assert type(model).__name__ == "Speech2TextForConditionalGeneration" and not any(info.values()), info
    extractor = transformers.AutoFeatureExtractor.from_pretrained(root / "back")
    assert type(extractor).__name__ == "Speech2TextFeatureExtractor" and extractor.feature_size == BINS


@pytest.mark.slow
def test_uer_hf_uer_keeps_label_smoothing_and_computes_the_same(tmp_path):
    sizes = {"vocab_size": V, "dim": 36, "num_layers": 3, "num_decoder_layers": 2, "num_heads": 4, "ffn_dim": 52,
             "conv_channels": 22, "num_mel_bins": BINS, "max_frames": 42}
    cfg = resolve(compose_config(["+model=s2t_tiny", *(f"model.{k}={v}" for k, v in sizes.items())]))
    assert cfg.model.target.lm.label_smoothing == 0.1
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    tokenizer().save_pretrained(tmp_path / "tok")
    save_checkpoint(tmp_path / "uer", model, cfg, Tokenizer.load(tmp_path / "tok"), None)
    convert(tmp_path / "uer", tmp_path / "hf")
    hf = transformers.AutoModelForSpeechSeq2Seq.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.uer_label_smoothing == 0.1 and hf.config.decoder_start_token_id == EOS
    fields = batch()
    with torch.no_grad():
        assert_parity(model(fields).logits["lm"], hf(**fields).logits[fields["labels"] != -100])
    convert(tmp_path / "hf", tmp_path / "back")
    same_tensors(tmp_path / "uer" / "model.safetensors", tmp_path / "back" / "model.safetensors")
    assert load_config(tmp_path / "back").model == load_config(tmp_path / "uer").model


def test_a_speech2text_tokenizer_directory_reads_with_transformers_ids(tmp_path):
    """Published S2T directories hold Speech2TextTokenizer's files (sentencepiece.bpe.model and a
    vocab.json numbering its pieces as fairseq's S2T recipes train them), no tokenizer.json."""
    lines = ["in the beginning god created the heaven and the earth", "and the earth was without form and void"]
    (tmp_path / "text.txt").write_text("\n".join(lines * 20) + "\n")
    sentencepiece.SentencePieceTrainer.train(
        input=str(tmp_path / "text.txt"), model_prefix=str(tmp_path / "spm"), vocab_size=28, model_type="unigram",
        bos_id=0, pad_id=1, eos_id=2, unk_id=3, character_coverage=1.0, minloglevel=2)
    pieces = sentencepiece.SentencePieceProcessor(model_file=str(tmp_path / "spm.model"))
    vocab = {pieces.id_to_piece(i): i for i in range(pieces.get_piece_size())}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    reference = transformers.Speech2TextTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "spm.model"))
    reference.save_pretrained(tmp_path / "hf")
    ours = read_hf_tokenizer(tmp_path / "hf")
    for text in [*lines, "the void quux"]:
        ids = reference(text)["input_ids"]
        assert ours.encode_batch([text])[0] + [ours.eos_token_id] == ids
        assert ours.decode(ids, skip_special_tokens=True) == reference.decode(ids, skip_special_tokens=True)
    assert (ours.bos_token_id, ours.pad_token_id, ours.eos_token_id) == (0, PAD, EOS)
