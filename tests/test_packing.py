"""Packed documents for decoder-only LMs (``data=llm_pretrain``): the processor packs bos/eos documents
into blocks losing no token, the collator restarts positions and drops cross-document targets, and
the model keeps the documents of a block apart (block-diagonal causal mask, positions per document):
a packed document's logits, loss and gradients are those of the document alone."""
from __future__ import annotations

import pytest
import torch
import transformers
from checks import assert_parity
from convert_cases import load_uer
from omegaconf import OmegaConf
from uer.preprocess.build import build_dataset, load_dataset_dir
from uer.preprocess.llm_pretrain import pack_documents
from uer.preprocess.registry import options_from_config

from uer.config import compose_config, resolve
from uer.convert import convert
from uer.data.collators import shipped_data_config
from uer.data.packing import PackedLm
from uer.data.tokenizer import Tokenizer
from uer.layers.attention import attention_mask, packed_documents
from uer.models.build import build_model

TINY = ["model.dim=24", "model.num_heads=4", "model.num_layers=2", "model.ffn_dim=40", "model.vocab_size=53",
        "model.dropout=0.0"]


class Tok:
    """The special tokens the collator reads: pad and eos share an id, as GPT-2's ``<|endoftext|>``."""

    pad_token_id = eos_token_id = 0


def test_block_diagonal_causal_mask_from_restarting_positions():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5]])
    assert packed_documents(positions).tolist() == [[0, 0, 0, 1, 1, 2], [0, 0, 0, 0, 0, 0]]
    mask, is_causal = attention_mask(None, "causal", 6, documents=packed_documents(positions))
    assert not is_causal and mask.shape == (2, 1, 6, 6)
    causal = torch.ones(6, 6).tril().bool()
    blocks = torch.block_diag(torch.ones(3, 3), torch.ones(2, 2), torch.ones(1, 1)).bool()
    assert torch.equal(mask[0, 0], causal & blocks) and torch.equal(mask[1, 0], causal)


def test_pack_documents_loses_no_token_and_records_the_pieces():
    blocks = list(pack_documents([[1, 2, 3], [4, 5, 6, 7, 8], [9]], 4))
    assert blocks == [([1, 2, 3, 4], [3, 1]), ([5, 6, 7, 8], [4]), ([9], [1])]


def test_collator_restarts_positions_and_ignores_cross_document_targets():
    rows = {"input_ids": [[5, 6, 0, 0, 7, 8, 9, 0], [5, 6, 7, 0]], "document_lengths": [[4, 4], [4]]}
    batch = PackedLm(Tok(), document_mask=True)(rows, [])
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5, 6, 7]]
    # eos (id 0 = the pad id) stays a target; the second document's first token is not; padding is not
    assert batch["labels"].tolist() == [[5, 6, 0, 0, -100, 8, 9, 0], [5, 6, 7, 0, -100, -100, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1] * 8, [1] * 4 + [0] * 4]
    plain = PackedLm(Tok(), document_mask=False)(rows, [])
    assert "position_ids" not in plain and plain["labels"][0].tolist() == rows["input_ids"][0]


@pytest.mark.parametrize("preset", ["llama_tiny", "gpt2_tiny"])
def test_a_packed_document_computes_exactly_as_the_document_alone(preset):
    """Rotary (Llama) and learned (GPT-2) positions: the second document of a packed, padded block
    gives the logits it gives alone; the block's loss sum is the sum of the documents' own loss sums
    and its gradients their sum (fp32)."""
    model = build_model(resolve(compose_config([f"+model={preset}", *TINY])).model).eval()
    torch.manual_seed(0)
    first, second = torch.randint(1, 53, (7,)), torch.randint(1, 53, (5,))
    collate = PackedLm(Tok())
    packed = collate({"input_ids": [[*first.tolist(), *second.tolist()], first.tolist()],
                      "document_lengths": [[7, 5], [7]]}, [])
    alone = [collate({"input_ids": [doc.tolist()], "document_lengths": [[len(doc)]]}, []) for doc in (first, second)]

    def run(batch):
        model.zero_grad()
        out = model(batch)
        out.terms["lm"].loss_sum.backward()
        return out, model.encode(batch)[0], [p.grad.clone() for p in model.parameters()]

    seen = []  # the positions rotary attention (Llama) rotates q and k by: the batch's
    hooks = [m.register_forward_pre_hook(lambda _, args: seen.append(args[2])) for m in model.modules()
             if type(m).__name__ == "RotaryEmbedding"]
    out, hidden, grads = run(packed)
    for hook in hooks:
        hook.remove()
    assert all(torch.equal(positions, packed["position_ids"]) for positions in seen) and len(seen) == 2 * len(hooks)
    singles = [run(batch) for batch in alone]
    logits = model.logits(hidden)
    assert_parity(logits[0, 7:], model.logits(singles[1][1])[0])
    assert_parity(logits[0, :7], model.logits(singles[0][1])[0])
    assert_parity(logits[1, :7], model.logits(singles[0][1])[0])  # padding changes nothing either
    assert out.terms["lm"].num_items == 6 + 4 + 6 == model.num_items(packed)["lm"]
    expected_loss = 2 * singles[0][0].terms["lm"].loss_sum + singles[1][0].terms["lm"].loss_sum
    assert_parity(out.terms["lm"].loss_sum, expected_loss.detach())
    for grad, g0, g1 in zip(grads, singles[0][2], singles[1][2]):
        assert_parity(grad, 2 * g0 + g1)
    unmasked = PackedLm(Tok(), document_mask=False)({"input_ids": [[*first.tolist(), *second.tolist()]],
                                                      "document_lengths": [[7, 5]]}, [])
    with torch.no_grad():  # the proof has teeth: without the document mask the second document sees the first
        assert not torch.allclose(model.logits(model.encode(unmasked)[0])[0, 7:], logits[0, 7:], atol=1e-3)


def test_llm_pretrain_dataset_is_bos_document_eos_in_blocks(tmp_path):
    corpus = tmp_path / "docs.txt"
    corpus.write_text("In the beginning God created the heaven and the earth.\nAnd God said, Let there be light.\n"
                      "And the evening and the morning were the first day.\n", encoding="utf-8")
    cfg = OmegaConf.to_container(shipped_data_config("llm_pretrain", corpus=str(corpus), seq_length=16, num_proc=1))
    dataset, _, tokenizer = load_dataset_dir(build_dataset(options_from_config(cfg), output_dir=tmp_path / "ds"))
    ids = [i for row in dataset["input_ids"] for i in row]
    assert all(len(row) == 16 for row in dataset["input_ids"][:-1])
    assert [sum(lengths) for lengths in dataset["document_lengths"]] == [len(row) for row in dataset["input_ids"]]
    lines = corpus.read_text(encoding="utf-8").splitlines()
    expected = [i for ids in Tokenizer.load("builtin:kjv-bpe").encode_batch(lines) for i in (0, *ids, 0)]
    assert ids == expected  # <|endoftext|> (id 0) is kjv-bpe's bos and eos
    batch = PackedLm(tokenizer)(dataset[:2], [])
    assert batch["position_ids"][0, 0] == 0 and (batch["labels"] != -100).any()


@pytest.mark.slow  # conversion and transformers' Llama: 13 s on the busy shared machine
def test_a_packed_batch_computes_as_transformers_llama_reads_it(tmp_path):
    """transformers reads restarting ``position_ids`` (no attention mask, no cache) as packed
    sequences too: a converted Llama gives its logits on the same packed block."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(hidden_size=24, num_attention_heads=4, num_key_value_heads=2,
                                      intermediate_size=40, vocab_size=53, num_hidden_layers=2)
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "uer")
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "hf", attn_implementation="sdpa").eval()
    model = load_uer(tmp_path / "uer")
    batch = PackedLm(Tok())({"input_ids": [torch.randint(1, 53, (12,)).tolist()], "document_lengths": [[7, 5]]}, [])
    with torch.no_grad():
        expected = hf(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        assert_parity(model.logits(model.encode(batch)[0]), expected)
