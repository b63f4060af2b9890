"""Data for encoder-decoder and prefix-LM objectives: T5 span corruption, BART infilling and sentence
permutation, PEGASUS gap sentences, MT pairs with a target tokenizer, prefix LM; the batch contract,
per-sample determinism, and ``uer-preprocess`` for each processor."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from uer.cli.preprocess import main as preprocess_main
from uer.data.collators import make_collator, shipped_data_config
from uer.data.gap_sentences import select_gap_sentences
from uer.data.infilling import InfillingCollator, infill, infill_spans, permute_sentences
from uer.data.prefix_lm import PrefixLmCollator
from uer.data.seq2seq import Seq2SeqCollator
from uer.data.span_corruption import random_spans_noise_mask, raw_length, span_corrupt
from uer.data.tokenizer import Tokenizer
from uer.errors import UerError
from uer.preprocess.build import load_dataset_dir
from uer.preprocess.registry import options_from_config

CONF = Path(__file__).resolve().parents[1] / "conf" / "data"
NEWS = Path(__file__).resolve().parents[2] / "shared" / "data" / "corpora" / "news-commentary-v13-en-zh_sampled.txt"
SENTINELS = np.arange(1000, 1100)
EOS, PAD, MASK, BOS = 3, 0, 4, 2


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def rng(*seed) -> np.random.Generator:
    return np.random.default_rng(list(seed))


def text(length: int, seed: int) -> list[int]:
    """Random token ids in [10, 900): never a special id or a sentinel."""
    return rng(seed, 1).integers(10, 900, length).tolist()


def unpad(batch, field: str, i: int, mask: str) -> list[int]:
    return batch[field][i][batch[mask][i].bool()].tolist()


# --- T5 span corruption ---------------------------------------------------------------------------

def reconstruct(source: list[int], target: list[int]) -> list[int]:
    """The original text from a corrupted input and its target: sentinel k in the input is replaced
    by what follows sentinel k in the target, up to the next sentinel or eos."""
    assert source[-1] == EOS and target[-1] == EOS
    spans, current = {}, None
    for token in target[:-1]:
        if token in SENTINELS:
            current = spans.setdefault(token, [])
        else:
            current.append(token)
    return [t for token in source[:-1] for t in (spans.pop(token) if token in SENTINELS else [token])]


def test_span_corruption_sentinels_line_up_and_no_token_is_lost_or_duplicated():
    for i in range(300):
        ids = text(int(rng(i).integers(2, 300)), i)
        source, target = span_corrupt(ids, rng(i, 2), SENTINELS, EOS)
        in_sentinels = [t for t in source if t in SENTINELS]
        out_sentinels = [t for t in target if t in SENTINELS]
        k = len(in_sentinels)
        assert k >= 1 and in_sentinels == out_sentinels == SENTINELS[:k].tolist()
        assert target[0] == SENTINELS[0]  # the target starts with sentinel 0, then its span
        assert reconstruct(source, target) == ids
        assert len(source) + len(target) == len(ids) + 2 * k + 2


def test_noise_density_and_mean_span_length_are_as_configured_on_average():
    tokens, target_length = raw_length(512, 0.15, 3.0)
    assert (tokens, target_length) == (568, 114)  # Hugging Face's run_t5_mlm_flax numbers
    noise = spans = 0
    lengths = []
    for i in range(200):
        mask = random_spans_noise_mask(tokens, 0.15, 3.0, rng(i))
        assert not mask[0]  # non-noise first, as in the reference
        starts = np.flatnonzero(mask & ~np.r_[False, mask[:-1]])
        ends = np.flatnonzero(mask & ~np.r_[mask[1:], False])
        lengths += (ends - starts + 1).tolist()
        noise, spans = noise + mask.sum(), spans + len(starts)
        source, target = span_corrupt(text(tokens, i), rng(i), SENTINELS, EOS)
        assert (len(source), len(target)) == (512, 114)
    assert noise / (200 * tokens) == pytest.approx(0.15, abs=0.002)
    assert noise / spans == pytest.approx(3.0, abs=0.05)
    assert min(lengths) == 1 and max(lengths) > 6  # random segmentation, not fixed spans
    for density, mean in ((0.3, 5.0), (0.5, 2.0)):
        masks = [random_spans_noise_mask(400, density, mean, rng(i)) for i in range(50)]
        total = sum(m.sum() for m in masks)
        runs = sum((m & ~np.r_[False, m[:-1]]).sum() for m in masks)
        assert total / (50 * 400) == pytest.approx(density, abs=0.01)
        assert total / runs == pytest.approx(mean, rel=0.05)


# --- BART --------------------------------------------------------------------------------------------

def test_text_infilling_one_mask_per_span_and_poisson_lengths():
    drawn = []
    for i in range(400):
        ids = text(int(rng(i).integers(1, 200)), i)
        spans = infill_spans(len(ids), 0.3, 3.0, rng(i, 3))
        lengths = [length for _, length in spans]
        assert sum(lengths) == math.ceil(0.3 * len(ids))
        assert all(a + la <= b for (a, la), (b, _) in zip(spans, spans[1:]))  # ordered, no overlap
        assert spans[-1][0] + spans[-1][1] <= len(ids)
        noised = infill(ids, spans, MASK)
        assert noised.count(MASK) == len(spans)  # zero-length spans insert a mask
        assert len(noised) == len(ids) - sum(lengths) + len(spans) <= len(ids)
        # put each span's tokens back in place of its mask: the original comes back
        restored, pieces = [], iter(ids[start:start + length] for start, length in spans)
        for token in noised:
            restored.extend(next(pieces) if token == MASK else [token])
        assert restored == ids
        drawn += lengths[:-1]  # the last span is cut to fit
    drawn = np.array(drawn)
    assert drawn.mean() == pytest.approx(3.0, abs=0.15) and drawn.var() == pytest.approx(3.0, abs=0.4)
    assert (drawn == 0).mean() == pytest.approx(math.exp(-3), abs=0.015)


def test_sentence_permutation_keeps_the_sentence_set_and_labels_are_the_original():
    sentences = [text(int(rng(i).integers(1, 9)), i) for i in range(10)]
    orders = set()
    for i in range(50):
        permuted = permute_sentences(sentences, 1.0, rng(i))
        assert sorted(permuted) == sorted(sentences)
        orders.add(tuple(map(tuple, permuted)))
    assert len(orders) > 40
    assert permute_sentences(sentences, 0.0, rng(0)) == sentences
    ids = [t for s in sentences for t in s]
    row = {"input_ids": [ids], "sentence_lengths": [[len(s) for s in sentences]]}
    plain = InfillingCollator(PAD, MASK, BOS, EOS, EOS, mask_ratio=0.0)(row, [rng(5)])
    source, labels = plain["input_ids"][0].tolist(), plain["labels"][0].tolist()
    assert labels == [BOS, *ids, EOS] and source != labels and sorted(source) == sorted(labels)
    noisy = InfillingCollator(PAD, MASK, BOS, EOS, EOS)(row, [rng(5)])
    assert noisy["labels"][0].tolist() == labels and noisy["decoder_input_ids"][0, :2].tolist() == [EOS, BOS]
    assert MASK in noisy["input_ids"][0].tolist()


# --- PEGASUS gap sentences -----------------------------------------------------------------------------

def test_gap_sentence_selection_ratio_and_rules():
    for n in range(1, 40):
        sentences = [text(5, 100 * n + i) for i in range(n)]
        expected = min(n, max(1, round(0.3 * n)))
        assert select_gap_sentences(sentences, 0.3, "lead", rng(n)) == list(range(expected))
        picked = select_gap_sentences(sentences, 0.3, "random", rng(n))
        assert len(set(picked)) == len(picked) == expected and picked == sorted(picked)
        assert len(select_gap_sentences(sentences, 0.3, "principal", rng(n))) == expected
    # the sentence sharing most words with the rest is the principal one
    doc = [[10, 11, 12], [20, 21, 22], [10, 20, 30, 31], [40, 41]]
    assert select_gap_sentences(doc, 0.25, "principal", rng(0)) == [2]
    randoms = {tuple(select_gap_sentences([[i] for i in range(10)], 0.3, "random", rng(s))) for s in range(30)}
    assert len(randoms) > 20


def test_gap_sentence_batch_masks_the_selected_sentences_and_targets_them_in_order():
    tokenizer = Tokenizer.load("builtin:kjv-wordpiece")
    cfg = shipped_data_config("gsg", gap_ratio=0.3, gap_selection="lead", seq_length=64)
    collator = make_collator(cfg, tokenizer)
    sentences = [text(3 + i, i) for i in range(7)]
    row = {"input_ids": [[t for s in sentences for t in s]], "sentence_lengths": [[len(s) for s in sentences]]}
    batch = collator(row, [rng(0)])
    mask, eos, pad = tokenizer.mask_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    assert batch["input_ids"][0].tolist() == [mask, mask, *[t for s in sentences[2:] for t in s], eos]
    assert batch["labels"][0].tolist() == [*sentences[0], *sentences[1], eos]
    assert batch["decoder_input_ids"][0].tolist() == [pad, *sentences[0], *sentences[1]]


# --- batch contracts --------------------------------------------------------------------------------

def test_mt_batch_contract_shift_right_and_padding():
    rows = {"input_ids": [[5, 6, 7, EOS], [8, EOS]], "labels": [[50, 51, 9], [52, 53, 54, 55, 9]]}
    batch = Seq2SeqCollator(pad_id=PAD, target_pad_id=1, decoder_start_id=9)(rows, [rng(0), rng(1)])
    assert set(batch) == {"input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask", "labels"}
    assert batch["input_ids"].tolist() == [[5, 6, 7, EOS], [8, EOS, PAD, PAD]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["labels"].tolist() == [[50, 51, 9, -100, -100], [52, 53, 54, 55, 9]]
    assert batch["decoder_input_ids"].tolist() == [[9, 50, 51, 9, 1], [9, 52, 53, 54, 55]]
    assert batch["decoder_attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert all(t.dtype.is_signed and not t.dtype.is_floating_point for t in batch.values())


def test_prefixlm_batch_contract_loss_on_target_only():
    rows = {"input_ids": [[5, 6, 3, 7, 8, 0], [9, 3, 10]], "token_type_ids": [[0, 0, 0, 1, 1, 1], [0, 0, 1]]}
    batch = PrefixLmCollator(pad_id=0)(rows, [rng(0), rng(1)])
    assert batch["input_ids"].tolist() == [[5, 6, 3, 7, 8, 0], [9, 3, 10, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 1, 1, 1], [0, 0, 1, 0, 0, 0]]
    assert batch["labels"].tolist() == [[-100, -100, -100, 7, 8, 0], [-100, -100, 10, -100, -100, -100]]


@pytest.mark.parametrize("name", ["t5", "bart", "gsg"])
def test_samples_depend_on_seed_epoch_index_only_not_on_the_batch(name):
    tokenizer = Tokenizer.load("builtin:kjv-wordpiece")
    tokenizer.add_sentinels()
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    cfg.gap_selection = "random"
    collator = make_collator(cfg, tokenizer)
    lengths = [[int(n) for n in rng(i, 7).integers(1, 12, int(rng(i, 8).integers(1, 6)))] for i in range(12)]
    rows = {"input_ids": [text(sum(ls), i) for i, ls in enumerate(lengths)], "sentence_lengths": lengths}

    def samples(indices, epoch=0):
        batch = collator({k: [v[i] for i in indices] for k, v in rows.items()}, [rng(0, epoch, i) for i in indices])
        return {i: (unpad(batch, "input_ids", j, "attention_mask"), unpad(batch, "labels", j, "decoder_attention_mask"))
                for j, i in enumerate(indices)}

    alone = {i: samples([i])[i] for i in range(12)}
    assert samples(range(12)) == alone == {**samples([11, 3, 5, 0]), **samples([1, 2, 4, 6, 7, 8, 9, 10])}
    assert samples(range(12), epoch=1) != alone  # a new draw each epoch


# --- tokenizers -----------------------------------------------------------------------------------------

def test_sentinels_added_in_t5_order_and_target_tokenizer_saved_and_loaded(tmp_path):
    tokenizer = Tokenizer.load("builtin:kjv-wordpiece")
    assert tokenizer.sentinel_ids() == []
    tokenizer.add_sentinels(100)
    ids = tokenizer.sentinel_ids()
    assert len(ids) == 100 and ids[0] == tokenizer.vocab_size - 1 == 8099 and ids[99] == 8000
    with pytest.raises(UerError):
        tokenizer.add_sentinels()
    tokenizer.target = Tokenizer.load("builtin:kjv-bpe")
    tokenizer.save(tmp_path / "tok")
    loaded = Tokenizer.load(tmp_path / "tok")
    assert loaded.sentinel_ids() == ids and loaded.target.vocab_size == 8000
    source_only = Tokenizer.load(tmp_path / "tok" / "tokenizer.json")
    assert loaded.fingerprint() == tokenizer.fingerprint() != source_only.fingerprint()


def test_t5_sentinel_errors_are_one_line_and_name_the_key():
    with pytest.raises(UerError, match="data.sentinel_token"):
        options_from_config(shipped_data_config("t5", sentinel_token="[unused{}]")).tokenizer_spec()
    tokenizer = Tokenizer.load("builtin:kjv-wordpiece")
    tokenizer.add_sentinels(5)
    with pytest.raises(UerError, match="needs 28"):
        make_collator(shipped_data_config("t5", seq_length=512), tokenizer)


# --- uer-preprocess ---------------------------------------------------------------------------------

def preprocess(tmp_path, name: str, *overrides: str) -> tuple:
    out = tmp_path / name
    assert preprocess_main([f"data={name}", "data.num_proc=1", f"output={out}", *overrides]) == 0
    return load_dataset_dir(out)


@pytest.mark.parametrize("name", ["t5", "bart", "gsg", "prefixlm"])
def test_uer_preprocess_on_the_embedded_corpus_and_a_batch(tmp_path, name, capsys):
    dataset, meta, tokenizer = preprocess(tmp_path, name, "data.seq_length=64")
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    assert meta["processor"] == cfg.processor._target_ and len(dataset) > 1000
    cfg.seq_length = 64
    batch = make_collator(cfg, tokenizer)(dataset[:8], [rng(0, 0, i) for i in range(8)])
    assert batch["input_ids"].shape[1] <= 64
    assert (batch["labels"] != -100).any()
    if name == "t5":
        assert len(tokenizer.sentinel_ids()) == 100 and tokenizer.vocab_size == 8100
        assert batch["input_ids"].shape[1] == 64  # full blocks corrupt to exactly seq_length
    if name in ("bart", "gsg"):
        head = dataset[:200]
        assert all(sum(ls) == len(ids) for ids, ls in zip(head["input_ids"], head["sentence_lengths"]))


def test_mt_pairs_invalid_lines_and_trained_target_tokenizer(tmp_path, capsys):
    tsv = tmp_path / "pairs.tsv"
    lines = ["the king said\tle roi dit", "and he went\tet il alla", "no tab here", "", "a\tb\tc"] * 20
    tsv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert preprocess_main(["data=mt", f"data.corpus={tsv}", f"output={tmp_path / 'bad'}"]) == 2
    assert f"corpus {tsv}: line 3 is not 'source<TAB>target'" in capsys.readouterr().err
    dataset, meta, tokenizer = preprocess(tmp_path, "mt", f"data.corpus={tsv}", "data.invalid_pairs=skip",
                                          "data.vocab_size=60")
    assert len(dataset) == 40 and meta["source"]["skipped_invalid_pairs"] == 40
    target = tokenizer.target
    assert target is not None and target.token_to_id("roi") is not None and tokenizer.token_to_id("roi") is None
    row = dataset[0]
    assert row["labels"] == [*target.encode_batch(["le roi dit"])[0], target.sep_token_id]
    assert row["input_ids"] == [*tokenizer.encode_batch(["the king said"])[0], tokenizer.sep_token_id]
    again = options_from_config(shipped_data_config("mt", corpus=str(tsv), vocab_size=60, invalid_pairs="skip"))
    assert Tokenizer.load(again.tokenizer_spec()).fingerprint() == tokenizer.fingerprint()  # deterministic
    cfg = OmegaConf.load(CONF / "mt.yaml")
    batch = make_collator(cfg, tokenizer)(dataset[:4], [rng(i) for i in range(4)])
    assert batch["decoder_input_ids"][0, 0] == target.sep_token_id  # eos ([SEP]) of the target side


@pytest.mark.skipif(not NEWS.is_file(), reason="../shared/data is absent")
def test_mt_on_news_commentary_english_to_chinese(tmp_path):
    dataset, meta, tokenizer = preprocess(tmp_path, "mt", f"data.corpus={NEWS}")
    assert len(dataset) == 1000 and meta["source"]["skipped_invalid_pairs"] == 0
    assert tokenizer.target.token_to_id("经") is not None and tokenizer.token_to_id("经") is None
    assert tokenizer.token_to_id("economic") is not None
    assert tokenizer.target.decode(dataset[0]["labels"][:-1]).replace(" ", "") == "1929年还是1989年?"
