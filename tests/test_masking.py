"""Batches the model trains on: dynamic MLM masking (rate, 80/10/10 split, never specials or
padding, per-row randomness), causal-LM padding, and the deterministic, resumable, rank-partitioned
loader. (Sentence pairs and packing are checked at the source, in test_preprocess.py.)"""
from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch
from datasets import Dataset
from uer.preprocess.corpus import default_corpus

from uer.data.causal import LmCollator
from uer.data.loader import BatchLoader
from uer.data.masking import MaskedLm, MlmCollator, mask_tokens
from uer.data.tokenizer import Tokenizer
from uer.errors import UerError

MASK_PROB = 0.15


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.load("builtin:kjv-wordpiece")


@pytest.fixture(scope="module")
def collator(tokenizer) -> MlmCollator:
    return MlmCollator(tokenizer.all_special_ids, tokenizer.pad_token_id, tokenizer.mask_token_id,
                       tokenizer.vocab_size, MASK_PROB)


@pytest.fixture(scope="module")
def pairs(tokenizer) -> dict[str, list]:
    """2000 rows ``[CLS] A [SEP] B [SEP]`` from consecutive KJV verses, each side cut to a random
    length (1-40 tokens), so rows range from 5 to 83 tokens and batches need padding."""
    verses = [v for v in default_corpus().read_text(encoding="utf-8").splitlines()[:2200] if v]
    encoded = tokenizer.encode_batch(verses)
    rng = np.random.default_rng(1)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    rows = {"input_ids": [], "token_type_ids": [], "next_sentence_label": []}
    for a, b in pairwise(encoded[:2001]):
        a, b = a[:rng.integers(1, 41)], b[:rng.integers(1, 41)]
        rows["input_ids"].append([cls, *a, sep, *b, sep])
        rows["token_type_ids"].append([0] * (len(a) + 2) + [1] * (len(b) + 1))
        rows["next_sentence_label"].append(int(rng.integers(0, 2)))
    return rows


def take(rows: dict[str, list], index) -> dict[str, list]:
    return {key: [column[i] for i in index] for key, column in rows.items()}


def rngs(seeds) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in seeds]


def collate_all(collator, rows, batch_size=32):
    """Collate ``rows`` in batches with rng seed = row index; yields (original ids, batch) per batch."""
    n = len(rows["input_ids"])
    for start in range(0, n, batch_size):
        index = list(range(start, min(n, start + batch_size)))
        yield take(rows, index), collator(take(rows, index), rngs(index))


def test_mlm_rate_split_and_untouched_positions(collator, tokenizer, pairs):
    special = set(tokenizer.all_special_ids)
    chosen_total = maskable_total = masked = replaced = kept = 0
    replacements = []
    for rows, batch in collate_all(collator, pairs):
        ids, labels = batch["input_ids"].numpy(), batch["labels"].numpy()
        for r, original in enumerate(rows["input_ids"]):
            length = len(original)
            orig = np.array(original)
            maskable = ~np.isin(orig, list(special))
            chosen = labels[r, :length] != -100
            # labels are -100 exactly off the chosen positions, the original ids on them; padding is never chosen
            assert np.array_equal(labels[r, :length][chosen], orig[chosen])
            assert (labels[r, length:] == -100).all() and (ids[r, length:] == tokenizer.pad_token_id).all()
            assert not (chosen & ~maskable).any()  # never a special token ([CLS], [SEP], ...)
            assert (ids[r, :length][~chosen] == orig[~chosen]).all()  # unchosen tokens are untouched
            n = int(maskable.sum())
            assert chosen.sum() == max(1, round(MASK_PROB * n))  # round(0.15·n) per row, at least one
            new = ids[r, :length][chosen]
            masked += int((new == tokenizer.mask_token_id).sum())
            swap = (new != tokenizer.mask_token_id) & (new != orig[chosen])
            replaced += int(swap.sum())
            kept += int((new == orig[chosen]).sum())
            replacements += new[swap].tolist()
            chosen_total += int(chosen.sum())
            maskable_total += n
    assert maskable_total > 50_000 and masked + replaced + kept == chosen_total
    assert abs(chosen_total / maskable_total - MASK_PROB) < 0.005  # only rounding per row moves it
    # 80/10/10; with ~10k chosen tokens one standard deviation is <= 0.004
    assert abs(masked / chosen_total - 0.8) < 0.02
    assert abs(replaced / chosen_total - 0.1) < 0.015
    assert abs(kept / chosen_total - 0.1) < 0.015
    # random replacements are ordinary tokens drawn from the whole vocabulary
    assert not special & set(replacements)
    assert len(set(replacements)) > 500 and max(replacements) < tokenizer.vocab_size


def test_padding_attention_and_passthrough_fields(collator, pairs):
    short_and_long = take(pairs, range(8))
    lengths = [len(x) for x in short_and_long["input_ids"]]
    assert len(set(lengths)) > 1
    batch = collator(short_and_long, rngs(range(8)))
    width = max(lengths)
    assert batch["input_ids"].shape == batch["labels"].shape == (8, width)
    assert batch["input_ids"].dtype == batch["labels"].dtype == torch.int64
    expected_mask = torch.tensor([[1] * n + [0] * (width - n) for n in lengths])
    assert torch.equal(batch["attention_mask"], expected_mask)
    types = batch["token_type_ids"]
    assert types.shape == (8, width) and (types[expected_mask == 0] == 0).all()
    for r, row in enumerate(short_and_long["token_type_ids"]):
        assert types[r, :lengths[r]].tolist() == row
    assert batch["next_sentence_label"].tolist() == short_and_long["next_sentence_label"]
    assert batch["next_sentence_label"].dtype == torch.int64

    same = [i for i, x in enumerate(pairs["input_ids"]) if len(x) == lengths[0]][:4]
    unpadded = collator(take(pairs, same), rngs(same))
    assert "attention_mask" not in unpadded and unpadded["input_ids"].shape == (len(same), lengths[0])
    plain = collator({"input_ids": pairs["input_ids"][:3]}, rngs(range(3)))
    assert set(plain) == {"input_ids", "labels", "masked_positions", "attention_mask"}
    # the flat row-major positions MlmTarget gathers: exactly the predicted entries, in order
    assert torch.equal(batch["masked_positions"], torch.nonzero(batch["labels"].flatten() != -100).squeeze(1))


def test_padding_is_never_masked_even_if_pad_is_not_listed_special(tokenizer):
    cls, sep, pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    collator = MlmCollator([cls, sep], pad, tokenizer.mask_token_id, tokenizer.vocab_size, 0.5)
    rows = {"input_ids": [[cls, *range(100, 140), sep], [cls, 200, 201, sep]]}
    for seed in range(20):
        batch = collator(rows, rngs([seed, seed + 1]))
        assert (batch["labels"][1, 4:] == -100).all() and (batch["input_ids"][1, 4:] == pad).all()
        assert (batch["labels"][1, 1:3] != -100).sum() == 1  # round(0.5 · 2) of the short row


def test_masking_is_dynamic_and_seeded(collator, pairs):
    rows = take(pairs, [i for i, x in enumerate(pairs["input_ids"]) if len(x) > 40][:1])
    first = collator(rows, rngs([7]))
    again = collator(rows, rngs([7]))
    assert torch.equal(first["input_ids"], again["input_ids"]) and torch.equal(first["labels"], again["labels"])
    draws = {tuple(collator(rows, rngs([seed]))["labels"][0].tolist()) for seed in range(20)}
    assert len(draws) == 20  # a fresh mask at every draw of the same row


def test_row_masking_ignores_its_batch_neighbours(collator, pairs):
    """The same rows with the same per-row rngs: alone (unpadded), all in one batch padded to the
    longest row of the data, and reversed in batches of 5 (other neighbours, other widths)."""
    lengths = [len(x) for x in pairs["input_ids"]]
    index = [int(i) for i in np.random.default_rng(0).choice(len(lengths), 20, replace=False)]
    longest = int(np.argmax(lengths))

    def rows_of(batch_index, seeds):
        batch = collator(take(pairs, batch_index), rngs(seeds))
        return {j: (batch["input_ids"][r, :lengths[j]], batch["labels"][r, :lengths[j]])
                for r, j in enumerate(batch_index)}

    alone = {}
    for j in index:
        alone.update(rows_of([j], [j]))
    together = rows_of([*index, longest], [*index, longest])
    reversed_ = {}
    for k in range(0, 20, 5):
        part = index[::-1][k:k + 5]
        reversed_.update(rows_of(part, part))
    for j in index:
        for other in (together, reversed_):
            assert torch.equal(other[j][0], alone[j][0]) and torch.equal(other[j][1], alone[j][1]), j


def test_mlm_collator_rejects_bad_options(tokenizer):
    with pytest.raises(ValueError, match="mask_prob"):
        MlmCollator(tokenizer.all_special_ids, 0, 4, 100, mask_prob=1.0)
    with pytest.raises(ValueError, match="mask and pad"):
        MlmCollator([0], 0, None, 100)


def test_whole_word_masking_predicts_every_piece_of_a_chosen_word(tokenizer, pairs):
    """data.whole_word: a word's ## pieces are predicted with it or not at all; about mask_prob of
    the words are chosen; with every token a word start, the masks are token masking's exactly."""
    wwm = MaskedLm(tokenizer, MASK_PROB, whole_word=True)
    rows = take(pairs, range(256))
    batch = wwm(rows, rngs(range(256)))
    predicted = batch["labels"] != -100
    padded = torch.nn.utils.rnn.pad_sequence([torch.tensor(r) for r in rows["input_ids"]], batch_first=True,
                                             padding_value=tokenizer.pad_token_id)
    pieces = torch.from_numpy(wwm.continuation)[padded]
    assert pieces.any()  # the rows do hold words of several pieces
    follows = pieces[:, 1:] & ~torch.isin(padded[:, :-1], torch.tensor(tokenizer.all_special_ids))
    assert torch.equal(predicted[:, 1:][follows], predicted[:, :-1][follows])  # a piece goes with its word
    words = (~pieces & ~torch.isin(padded, torch.tensor(tokenizer.all_special_ids))).sum()
    chosen_words = (predicted & ~pieces).sum()
    assert abs(chosen_words / words - MASK_PROB) < 0.02 and (predicted & pieces).any()
    ids_np = padded.numpy()
    maskable = ~np.isin(ids_np, tokenizer.all_special_ids)
    token_level = mask_tokens(ids_np, maskable, rngs(range(256)), MASK_PROB, wwm.mask_id, wwm.replacement_ids)
    all_starts = mask_tokens(ids_np, maskable, rngs(range(256)), MASK_PROB, wwm.mask_id, wwm.replacement_ids,
                             np.ones_like(maskable))
    assert all(np.array_equal(a, b) for a, b in zip(token_level, all_starts))
    with pytest.raises(UerError, match="whole_word"):
        MaskedLm(Tokenizer.load("builtin:kjv-bpe"), MASK_PROB, whole_word=True)


def test_lm_labels_are_ignored_exactly_at_padding():
    rows = {"input_ids": [[5, 6, 7, 8], [9, 10], [11, 12, 13]]}
    batch = LmCollator(pad_id=0)(rows, rngs(range(3)))
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [9, 10, 0, 0], [11, 12, 13, 0]]
    assert batch["labels"].tolist() == [[5, 6, 7, 8], [9, 10, -100, -100], [11, 12, 13, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]]
    # an eos id used as pad stays a label where it is a real token
    full = LmCollator(pad_id=2)({"input_ids": [[3, 2], [4, 2]]}, rngs(range(2)))
    assert "attention_mask" not in full and full["labels"].tolist() == [[3, 2], [4, 2]]


# --- loader ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dataset(pairs) -> Dataset:
    return Dataset.from_dict(take(pairs, range(50)))


def loader(dataset, collator, batch_size=4, **kwargs) -> BatchLoader:
    return BatchLoader(dataset, np.arange(len(dataset)), collator, batch_size, **kwargs)


def same_batch(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_order_is_seeded_per_epoch_and_never_repeats(dataset, collator):
    first, twin, other = loader(dataset, collator, seed=3), loader(dataset, collator, seed=3), loader(dataset, collator, seed=4)
    assert len(first) == 12  # 50 rows, batches of 4, last partial batch dropped
    epochs = [np.concatenate(first.plan(e)) for e in range(3)]
    for e, order in enumerate(epochs):
        assert len(order) == 48 and len(set(order.tolist())) == 48 and set(order) <= set(range(50))
        assert np.array_equal(order, np.concatenate(twin.plan(e)))
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])
    assert not np.array_equal(epochs[0], np.concatenate(other.plan(0)))
    # the batches themselves follow the plan: each row is the dataset row the plan names
    batch = next(iter(first))
    for r, j in enumerate(first.plan(0)[0]):
        n = len(dataset[int(j)]["input_ids"])
        assert batch["token_type_ids"][r, :n].tolist() == dataset[int(j)]["token_type_ids"]


def test_state_dict_resumes_exactly_across_epochs(dataset, collator):
    straight = iter(loader(dataset, collator, seed=5))
    expected = [next(straight) for _ in range(30)]  # 2.5 epochs
    first = loader(dataset, collator, seed=5)
    stream = iter(first)
    for _ in range(14):
        next(stream)
    state = first.state_dict()
    assert (state["epoch"], state["position"]) == (1, 2)
    resumed = loader(dataset, collator, seed=5)
    resumed.load_state_dict(dict(state))
    stream = iter(resumed)
    for want in expected[14:]:
        assert same_batch(next(stream), want)
    with pytest.raises(ValueError, match="global batch"):
        loader(dataset, collator, batch_size=8, seed=5).load_state_dict(state)
    with pytest.raises(ValueError, match="seed"):
        loader(dataset, collator, seed=6).load_state_dict(state)


def test_two_ranks_split_each_global_batch(dataset, collator):
    single = loader(dataset, collator, batch_size=8, seed=2)
    ranks = [loader(dataset, collator, batch_size=4, seed=2, rank=r, world_size=2) for r in (0, 1)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 6
    for epoch in (0, 1):
        plans = [r.plan(epoch) for r in ranks]
        for whole, a, b in zip(single.plan(epoch), *plans):
            assert np.array_equal(whole, np.concatenate([a, b]))
        for whole, a, b in zip(single.epoch_batches(epoch), *(r.epoch_batches(epoch) for r in ranks)):
            rows = [(x, i) for x in (a, b) for i in range(len(x["input_ids"]))]
            for i, (part, j) in enumerate(rows):  # each sample is masked the same on either rank
                n = int(part["attention_mask"][j].sum()) if "attention_mask" in part else part["input_ids"].shape[1]
                for key in ("input_ids", "labels", "token_type_ids"):
                    assert torch.equal(part[key][j, :n], whole[key][i, :n]), key
                assert part["next_sentence_label"][j] == whole["next_sentence_label"][i]
