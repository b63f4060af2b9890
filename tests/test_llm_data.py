"""Instruction-tuning data (``data=llm_sft``): chat templates render as transformers renders them,
labels cover exactly the assistant tokens transformers' ``return_assistant_tokens_mask`` marks (eos
included, pad = eos notwithstanding), packed conversations keep apart, bad records are one line
naming file and line, and the mixture script writes loadable records with a held-out test set."""
from __future__ import annotations

import json
from itertools import groupby

import pytest
from checks import one_line_error
from omegaconf import OmegaConf
from tokenizers import AddedToken
from transformers import PreTrainedTokenizerFast
from uer.preprocess.build import build_dataset, dataset_key, load_dataset_dir
from uer.preprocess.registry import options_from_config

from examples import sft_accuracy, sft_mixture
from uer.config import compose_config
from uer.data.chat import render_chat
from uer.data.collators import make_collator, shipped_data_config
from uer.data.packing import PackedLm
from uer.data.sft import encode_chat, record_messages
from uer.data.tokenizer import Tokenizer
from uer.train.run import pretrain

CHATML = (  # ChatML with transformers' assistant marker, and a check that uses raise_exception
    "{% if messages[0]['role'] == 'assistant' %}{{ raise_exception('a chat starts with a user') }}{% endif %}"
    "{% for m in messages %}{% if m['role'] == 'assistant' %}{{ '<|im_start|>assistant\\n' }}"
    "{% generation %}{{ m['content'] + '<|im_end|>\\n' }}{% endgeneration %}"
    "{% else %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who made the light?"},
        {"role": "assistant", "content": "God said, Let there be light."}, {"role": "user", "content": "And then?"},
        {"role": "assistant", "content": "And there was light."}]


@pytest.fixture(scope="module")
def chatml():
    """(uer tokenizer, transformers tokenizer) over the same byte-level BPE with ChatML tokens."""
    tokenizer = Tokenizer.load("builtin:kjv-bpe")
    tokenizer.backend.add_special_tokens([AddedToken(t, special=True) for t in ("<|im_start|>", "<|im_end|>")])
    tokenizer = Tokenizer(tokenizer.backend, {"bos": "<|endoftext|>", "eos": "<|im_end|>", "pad": "<|endoftext|>"})
    tokenizer.chat_template = CHATML
    reference = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend, eos_token="<|im_end|>")
    reference.chat_template = CHATML
    return tokenizer, reference


def test_labels_are_the_assistant_tokens_transformers_marks(chatml):
    tokenizer, reference = chatml
    expected = reference.apply_chat_template(CHAT, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, labels = encode_chat(CHAT, tokenizer)
    assert ids == expected["input_ids"]
    assert labels == [i if m else -100 for i, m in zip(ids, expected["assistant_masks"])]
    assert sum(expected["assistant_masks"]) > 0
    prompt = render_chat(CHAT[:4], tokenizer, add_generation_prompt=True)
    assert prompt == reference.apply_chat_template(CHAT[:4], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
    one_line_error(lambda: render_chat(CHAT[2:], tokenizer), "chat template", "a chat starts with a user")


def test_default_template_labels_each_answer_and_its_eos(wordpiece):
    assert render_chat(CHAT[1:3], wordpiece) == "[CLS]<|user|>\nWho made the light?[SEP]<|assistant|>\n" \
        "God said, Let there be light.[SEP]"  # a BERT vocabulary: [CLS] and [SEP] for bos and eos
    tokenizer = Tokenizer.load("builtin:kjv-bpe")  # no chat template; <|endoftext|> is bos, eos and pad
    ids, labels = encode_chat(CHAT, tokenizer)
    eos = tokenizer.eos_token_id
    spans = [tokenizer.decode(list(run)) for labelled, run in groupby(labels, key=lambda y: y != -100) if labelled]
    assert spans == ["God said, Let there be light.<|endoftext|>", "And there was light.<|endoftext|>"]
    assert render_chat(CHAT[:2], tokenizer, add_generation_prompt=True) == (
        "<|endoftext|><|system|>\nBe brief.<|endoftext|><|user|>\nWho made the light?<|endoftext|><|assistant|>\n")
    batch = PackedLm(tokenizer)({"input_ids": [ids, ids[:5]], "labels": [labels, labels[:5]],
                                 "document_lengths": [[len(ids)], [5]]}, [])
    targets = batch["labels"][0]
    assert (targets == eos).sum() == 2 and (batch["labels"][1, 5:] == -100).all()  # eos = pad id, still a target


def test_sft_dataset_packs_conversations_with_their_labels(tmp_path):
    corpus = tmp_path / "sft.jsonl"
    records = [{"instruction": "Say hi", "input": "", "output": "Hi."},
               {"instruction": "Repeat", "input": "light", "output": "light"},
               {"messages": CHAT}]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    cfg = OmegaConf.to_container(shipped_data_config("llm_sft", corpus=str(corpus), seq_length=80, num_proc=1))
    dataset, _, tokenizer = load_dataset_dir(build_dataset(options_from_config(cfg), output_dir=tmp_path / "ds"))
    encoded = [encode_chat(record_messages(json.dumps(r), "x"), tokenizer) for r in records]
    assert dataset["document_lengths"] == [[len(encoded[0][0]), len(encoded[1][0])], [len(encoded[2][0])]]
    assert dataset["input_ids"][0] == encoded[0][0] + encoded[1][0] and dataset["labels"][1] == encoded[2][1]
    batch = PackedLm(tokenizer)(dataset[:2], [])
    first = len(encoded[0][0])
    assert batch["position_ids"][0, first] == 0 and batch["position_ids"][0, first - 1] == first - 1


def test_sft_dataset_is_rendered_with_the_tokenizers_chat_template(chatml, tmp_path):
    tokenizer, _ = chatml
    corpus = tmp_path / "sft.jsonl"
    corpus.write_text(json.dumps({"messages": CHAT}) + "\n", encoding="utf-8")
    options = options_from_config(shipped_data_config("llm_sft", corpus=str(corpus), num_proc=1))
    dataset, _, loaded = load_dataset_dir(build_dataset(options, tokenizer, output_dir=tmp_path / "ds"))
    assert loaded.chat_template == CHATML and dataset["labels"][0] == encode_chat(CHAT, tokenizer)[1]
    plain = Tokenizer(tokenizer.backend, tokenizer.special_tokens)
    assert dataset_key(options, options.plan(), plain) != dataset_key(options, options.plan(), tokenizer)


@pytest.mark.parametrize("line, needle", [
    ('{"prompt": "hi", "completion": "ho"}', "neither an Alpaca record"),
    ('{"instruction": "hi", "input": ""}', 'without "output"'),
    ('{"messages": [{"role": "user", "content": ["hi"]}]}', 'message 0 "content" must be a string'),
    ('{"messages": [{"role": "user", "content": "hi"}]}', "no assistant message"),
    ('{"instruction": "hi", "output": 3}', '"output" must be a string'),
    ('not json', "not JSON"),
])
def test_a_bad_record_is_one_line_naming_file_and_line(tmp_path, line, needle):
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text('{"instruction": "hi", "output": "ho"}\n\n' + line + "\n", encoding="utf-8")
    options = options_from_config(shipped_data_config("llm_sft", corpus=str(corpus), num_proc=1))
    one_line_error(options.plan, f"corpus {corpus}: line 3", needle)


def test_an_empty_or_missing_sft_corpus_or_a_bad_switch_is_one_line(tmp_path, bpe):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    for corpus, needle in ((tmp_path / "empty.jsonl", "file is empty"), (None, "data.corpus")):
        options = options_from_config(shipped_data_config("llm_sft", corpus=corpus and str(corpus)))
        one_line_error(options.plan, needle)
    one_line_error(lambda: options_from_config(shipped_data_config("llm_sft", packing="yes")), "data.packing", "'yes'")
    one_line_error(lambda: make_collator(shipped_data_config("llm_sft", document_mask=2), bpe), "data.document_mask")


def test_sft_mixture_writes_records_holds_out_test_reviews_and_scores_answers(shared_data, tmp_path, capsys):
    assert sft_mixture.main([str(tmp_path), "--data", str(shared_data), "--per-task", "3", "--test", "5"]) == 0
    train = (tmp_path / "train.jsonl").read_text(encoding="utf-8").splitlines()
    test = (tmp_path / "book_review_test.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(train) == 12 and len(test) == 5
    messages = [record_messages(line, "train") for line in train + test]
    assert {m[0]["content"].split("\n")[0] for m in messages} >= {sft_mixture.BOOK_REVIEW, sft_mixture.WEIBO,
                                                                   sft_mixture.READING, sft_mixture.TRANSLATION}
    assert {json.loads(line)["output"] for line in test} <= {"正面", "负面"}
    held_out = {json.loads(line)["input"] for line in test}
    assert not held_out & {json.loads(line)["input"] for line in train}
    prompts = (tmp_path / "book_review_test_prompts.txt").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in prompts] == [m[:-1] for m in messages[12:]]  # for uer-generate --chat
    assert "book_review: 3" in capsys.readouterr().out
    answers = tmp_path / "answers.txt"
    answers.write_text("".join(f"我觉得是{json.loads(line)['output']}\n" for line in test[:4]) + "不知道\n", encoding="utf-8")
    assert sft_accuracy.main([str(tmp_path / "book_review_test.jsonl"), str(answers)]) == 0
    assert capsys.readouterr().out.splitlines() == ["accuracy 0.8000", "answered 0.8000", "records 5"]
    assert sft_accuracy.score(["正面", "负面"], ["负面，不是正面", "正面"])["accuracy"] == 0  # the first word counts
    assert sft_accuracy.score(["正面", "负面"], ["正 面", "负 面 。"])["accuracy"] == 1  # WordPiece decodes with spaces
    answers.write_text("正面\n", encoding="utf-8")
    one_line_error(lambda: sft_accuracy.main([str(tmp_path / "book_review_test.jsonl"), str(answers)]),
                   "1 answers for 5 records")


@pytest.mark.slow
def test_sft_trains_llama_tiny_through_the_one_loop(tmp_path):
    corpus = tmp_path / "sft.jsonl"
    words = ["light", "darkness", "water", "earth", "heaven", "day", "night", "seed"]
    corpus.write_text("".join(json.dumps({"instruction": "Repeat the word", "input": w, "output": w}) + "\n"
                              for w in words * 8), encoding="utf-8")
    args = ["+model=llama_tiny", "data=llm_sft", f"data.corpus={corpus}", f"trainer.output_dir={tmp_path / 'run'}",
            "trainer.max_steps=30", "trainer.progress=false", "trainer.eval_every=0", "trainer.save_every=0",
            "trainer.log_every=1", "data.eval_samples=4", "data.num_proc=1", "data.seq_length=64",
            "data.batch_size=4", "optim.lr=3e-3", "scheduler=constant"]
    pretrain(compose_config(args))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in rows if row["split"] == "train"]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5, losses
