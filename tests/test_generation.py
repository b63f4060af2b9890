"""Generation: greedy and beam search give transformers' tokens on converted tiny models, the cached
and recomputing paths agree, EOS stopping and padding, the sampling filters, and ``uer-generate``
end to end on a checkpoint ``uer-pretrain`` wrote."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from convert_cases import CASES, hf_tokenizer, load_uer, save_hf
from omegaconf import OmegaConf
from seq2seq_cases import CASES as SEQ2SEQ_CASES
from seq2seq_cases import PAD
from seq2seq_cases import save_hf as save_seq2seq_hf

from uer.cli.generate import main
from uer.config import compose_config, resolve
from uer.convert import convert
from uer.errors import UerError
from uer.generation import Sampler, generate, top_k_filter, top_p_filter
from uer.generation.search import beam_search, decode_tokens, greedy
from uer.models import build_model
from uer.train.checkpoint import list_checkpoints, save_checkpoint
from uer.train.run import pretrain

GPT2 = next(c for c in CASES if c.family == "gpt2")
DECODER_START = {"t5": 0, "bart": 2, "pegasus": 0}  # pad, eos, pad: as the released checkpoints
PROMPT_LENGTH = 6


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """A tiny random GPT2LMHeadModel and its uer conversion."""
    root = tmp_path_factory.mktemp("gpt2")
    hf = save_hf(GPT2, root / "hf")
    convert(root / "hf", root / "uer")
    return hf, load_uer(root / "uer")


def prompts() -> dict[str, torch.Tensor]:
    """Three left-padded prompts of 6, 4 and 2 tokens."""
    g = torch.Generator().manual_seed(3)
    mask = (torch.arange(PROMPT_LENGTH) >= torch.tensor([[0], [2], [4]])).long()
    ids = torch.randint(1, 99, (3, PROMPT_LENGTH), generator=g).masked_fill(mask == 0, 0)
    return {"input_ids": ids, "attention_mask": mask}


def hf_new_tokens(hf, **options) -> torch.Tensor:
    out = hf.generate(**prompts(), max_new_tokens=12, do_sample=False, **options)
    return out[:, PROMPT_LENGTH:]


@pytest.mark.parametrize("use_cache", [True, False], ids=["cached", "recomputed"])
def test_greedy_equals_transformers_gpt2(gpt2, use_cache):
    hf, model = gpt2
    expected = hf_new_tokens(hf, eos_token_id=92, pad_token_id=0)
    ours = generate(model, prompts(), max_new_tokens=12, eos_token_id=92, pad_token_id=0, use_cache=use_cache)
    ended = (expected == 92).any(dim=1)
    assert ended.any() and not ended.all()  # the case covers rows that stop and rows that run on
    assert torch.equal(ours, expected)


@pytest.mark.parametrize("early_stopping,length_penalty", [(True, 0.5), (False, 2.0), (False, -1.0)])
def test_beam_search_equals_transformers_gpt2(gpt2, early_stopping, length_penalty):
    hf, model = gpt2
    options = {"num_beams": 3, "length_penalty": length_penalty, "early_stopping": early_stopping,
               "eos_token_id": 7, "pad_token_id": 7}
    expected = hf_new_tokens(hf, **options)
    ours = generate(model, prompts(), max_new_tokens=12, strategy="beam", **options)
    assert (expected == 7).any() == (length_penalty < 1)  # a long-favouring penalty outlives the EOS
    assert torch.equal(ours, expected)


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_cached_and_recomputing_paths_give_the_same_tokens(gpt2, strategy):
    _, model = gpt2
    batch = prompts()
    right_padded = {key: torch.stack([row.roll(-shift) for row, shift in zip(value, [0, 2, 4])])
                    for key, value in batch.items()}
    assert right_padded["attention_mask"][:, 0].all()
    options = {"max_new_tokens": 10, "strategy": strategy, "num_beams": 3, "temperature": 1.5, "seed": 4}
    cached = generate(model, batch, **options)
    assert torch.equal(generate(model, batch, use_cache=False, **options), cached)
    assert torch.equal(generate(model, right_padded, **options), cached)


def test_a_cached_step_runs_one_position(gpt2):
    _, model = gpt2
    lengths = []
    hook = model.embedding.register_forward_hook(lambda module, args, out: lengths.append(out[0].shape[1]))
    try:
        generate(model, prompts(), max_new_tokens=4)
        cached, lengths[:] = list(lengths), []
        generate(model, prompts(), max_new_tokens=4, use_cache=False)
    finally:
        hook.remove()
    assert cached == [PROMPT_LENGTH, 1, 1, 1]
    assert lengths == [PROMPT_LENGTH, PROMPT_LENGTH + 1, PROMPT_LENGTH + 2, PROMPT_LENGTH + 3]


@pytest.fixture(scope="module")
def seq2seq(tmp_path_factory):
    """name -> (tiny random HF encoder-decoder, its uer conversion, its uer checkpoint directory)."""
    root = tmp_path_factory.mktemp("seq2seq")
    models = {}
    for name in SEQ2SEQ_CASES:
        hf = save_seq2seq_hf(name, root / name / "hf")
        convert(root / name / "hf", root / name / "uer")
        models[name] = hf, load_uer(root / name / "uer"), root / name / "uer"
    return models


def sources(name: str) -> dict[str, torch.Tensor]:
    """Three right-padded sources of 7, 5 and 3 tokens."""
    g = torch.Generator().manual_seed(3)
    mask = (torch.arange(7) < torch.tensor([[7], [5], [3]])).long()
    ids = torch.randint(3, 99, (3, 7), generator=g).masked_fill(mask == 0, PAD[SEQ2SEQ_CASES[name][0]])
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("name", list(SEQ2SEQ_CASES))
def test_greedy_and_beam_equal_transformers_seq2seq(seq2seq, name):
    hf, model, _ = seq2seq[name]
    start = DECODER_START[SEQ2SEQ_CASES[name][0]]
    common = {"max_new_tokens": 10, "decoder_start_token_id": start}
    free = hf.generate(**sources(name), do_sample=False, forced_eos_token_id=None, eos_token_id=None, **common)
    eos = int(free[1, 4])  # a token some row produces mid-way, so that EOS stopping is exercised
    hf_options = {"do_sample": False, "forced_eos_token_id": None, "eos_token_id": eos, "pad_token_id": eos, **common}
    for strategy, extra in [("greedy", {}), ("beam", {"num_beams": 3, "length_penalty": 0.7})]:
        expected = hf.generate(**sources(name), **extra, **hf_options)[:, 1:]
        assert strategy == "beam" or (expected[1] == eos).any()
        for use_cache in (True, False):
            ours = generate(model, sources(name), strategy=strategy, eos_token_id=eos, pad_token_id=eos,
                            use_cache=use_cache, **extra, **common)
            assert torch.equal(ours, expected), (strategy, use_cache)


def test_uer_generate_with_an_encoder_decoder_gives_transformers_text(seq2seq, capsys):
    hf, _, checkpoint = seq2seq["bart"]  # <s>=0 <pad>=1 </s>=2; the decoder starts with </s>
    texts = ["w7 w42 w98 w5 w61", "w11 w12"]
    assert main([str(checkpoint), *(a for t in texts for a in ("--prompt", t)), "--max-new-tokens", "6"]) == 0
    tokenizer = hf_tokenizer("bart")
    expected = []
    for text in texts:  # one at a time: no padding on the reference side
        ids = torch.tensor([[0, *tokenizer(text)["input_ids"], 2]])
        out = hf.generate(input_ids=ids, max_new_tokens=6, do_sample=False, decoder_start_token_id=2,
                          forced_eos_token_id=None, eos_token_id=2, pad_token_id=1)[0, 1:].tolist()
        expected.append(tokenizer.decode(out[:out.index(2)] if 2 in out else out, skip_special_tokens=True))
    assert all(expected) and capsys.readouterr().out.splitlines() == expected


def test_top_k_one_sampling_is_greedy(gpt2):
    _, model = gpt2
    expected = generate(model, prompts(), max_new_tokens=8)
    sampled = generate(model, prompts(), max_new_tokens=8, strategy="sample", top_k=1, temperature=0.7, seed=5)
    assert torch.equal(sampled, expected)


def test_sampling_is_reproducible_from_its_seed(gpt2):
    _, model = gpt2
    draws = [generate(model, prompts(), max_new_tokens=10, strategy="sample", temperature=2.0, seed=s)
             for s in (1, 1, 2)]
    assert torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0], draws[2])


class ScriptedState:
    """A decoding state whose logits at step t put ``bonus`` on token ``script[row, t]``, and that
    records the tokens it is fed."""

    def __init__(self, script: list[list[int]], vocab: int = 6, bonus: float = 5.0):
        self.script, self.vocab, self.bonus = torch.tensor(script), vocab, bonus
        self.t, self.fed = 0, []

    def logits(self) -> torch.Tensor:
        out = torch.zeros(len(self.script), self.vocab)
        out[torch.arange(len(self.script)), self.script[:, self.t]] = self.bonus
        return out

    def start(self) -> torch.Tensor:
        return self.logits()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.fed.append(tokens)
        self.t += 1
        return self.logits()

    def reorder(self, index: torch.Tensor) -> None:
        self.script = self.script[index]


def test_rows_stop_at_eos_and_are_padded_after_it():
    eos, pad = 1, 0
    state = ScriptedState([[3, 1, 4, 4, 4], [3, 3, 3, 1, 5], [5, 5, 5, 5, 5]])
    tokens = decode_tokens(state, greedy, max_new_tokens=4, eos_token_id=eos, pad_token_id=pad)
    assert tokens.tolist() == [[3, 1, 0, 0], [3, 3, 3, 1], [5, 5, 5, 5]]
    assert len(state.fed) == 3  # the last token is not fed back
    state = ScriptedState([[3, 1, 4, 4, 4], [2, 1, 5, 5, 5]])
    tokens = decode_tokens(state, greedy, max_new_tokens=5, eos_token_id=eos, pad_token_id=pad)
    assert tokens.tolist() == [[3, 1], [2, 1]]  # stops as soon as every row has ended


def test_beam_search_prefers_what_its_length_penalty_favours():
    # the script ends after 2 tokens with p ~0.97 per step; leaving it costs log p ~ -5 once, and
    # the continuation runs to the length limit (6 tokens) without an EOS
    script = [[2, 1, 3, 3, 3, 3]]
    for early_stopping in (True, False):
        short = beam_search(ScriptedState(script), 2, 6, 1, 0, length_penalty=1.0, early_stopping=early_stopping)
        assert short.tolist() == [[2, 1]]
        # sum log p / n**5: -0.07 / 2**5 < -5.2 / 6**5
        long = beam_search(ScriptedState(script), 2, 6, 1, 0, length_penalty=5.0, early_stopping=early_stopping)
        assert long.shape == (1, 6) and long[0, 0] == 2 and (long != 1).all()
    no_eos = beam_search(ScriptedState(script), 2, 6, eos_token_id=None, pad_token_id=0)
    assert no_eos.tolist() == [[2, 1, 3, 3, 3, 3]]


def test_top_p_keeps_the_smallest_set_with_enough_mass():
    logits = torch.tensor([[0.05, 0.5, 0.15, 0.3]]).log()
    kept = {p: (top_p_filter(logits, p) > float("-inf")).nonzero()[:, 1].tolist() for p in (0.5, 0.79, 0.8, 0.81, 1.0)}
    assert kept == {0.5: [1], 0.79: [1, 3], 0.8: [1, 3], 0.81: [1, 2, 3], 1.0: [0, 1, 2, 3]}
    assert torch.equal(top_p_filter(logits, 0.8)[0, [1, 3]], logits[0, [1, 3]])  # kept logits unchanged


def test_top_k_and_sampler_only_draw_kept_tokens():
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0, 0.0]])
    assert (top_k_filter(logits, 2) > float("-inf")).nonzero()[:, 1].tolist() == [1, 2]
    sampler = Sampler(temperature=3.0, top_k=3, top_p=0.9, generator=torch.Generator().manual_seed(0))
    draws = {int(sampler(logits)) for _ in range(200)}
    assert draws <= {1, 2, 3} and len(draws) > 1
    with pytest.raises(ValueError, match="top_p"):
        Sampler(top_p=0.0)


def test_a_model_that_cannot_generate_is_a_one_line_error(wordpiece):
    cfg = compose_config(["+model=bert_tiny"]).model
    cfg.vocab_size = wordpiece.vocab_size
    model = build_model(resolve(cfg))
    with pytest.raises(UerError, match="cannot generate"):
        generate(model, {"input_ids": torch.tensor([[5, 6]])})


def test_uer_generate_from_a_pretrained_checkpoint(small_corpus, tmp_path, wordpiece, capsys):
    pretrain(compose_config([
        "+model=gpt2_tiny", f"data.corpus={small_corpus}", f"trainer.output_dir={tmp_path / 'run'}",
        "trainer.max_steps=2", "data.batch_size=4", "data.seq_length=32", "data.eval_samples=4", "data.num_proc=1",
        "trainer.progress=false"]))
    checkpoint = str(list_checkpoints(tmp_path / "run")[-1])

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-m", "uer.cli.generate", checkpoint, "--prompt", "In the beginning",
                           "--prompt", "", "--prompt", "And God said", "--max-new-tokens", "5"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and all(line.strip() for line in lines)

    (tmp_path / "prompts.txt").write_text("In the beginning\nAnd God said\n", encoding="utf-8")
    assert main([checkpoint, "--input", str(tmp_path / "prompts.txt"), "--output", str(tmp_path / "out.txt"),
                 "--strategy", "beam", "--num-beams", "2", "--max-new-tokens", "5"]) == 0
    assert len((tmp_path / "out.txt").read_text(encoding="utf-8").splitlines()) == 2

    bert = compose_config(["+model=bert_tiny"]).model
    bert.vocab_size = wordpiece.vocab_size
    save_checkpoint(tmp_path / "bert", build_model(resolve(bert)), OmegaConf.create({"model": bert}), wordpiece, None)
    capsys.readouterr()
    for args, message in [((str(tmp_path / "missing"), "--prompt", "x"), "no such directory"),
                          ((str(tmp_path / "bert"), "--prompt", "x"), "cannot generate"),
                          ((checkpoint, "--input", str(tmp_path / "nope.txt")), "nope.txt: no such file"),
                          ((checkpoint, "--prompt", "x", "--top-p", "0"), "top_p must be in (0, 1]")]:
        assert main(list(args)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


@pytest.mark.parametrize("use_cache", [True, False])
def test_generating_past_the_position_table_is_a_one_line_error(gpt2, use_cache):
    hf, model = gpt2
    # the last new token is never fed back, so a prompt of 6 leaves room for n_positions - 6 + 1 new ones
    room = hf.config.n_positions - PROMPT_LENGTH + 1
    assert generate(model, prompts(), max_new_tokens=room, use_cache=use_cache).shape[1] <= room
    with pytest.raises(UerError, match=f"cannot generate {room + 1} new tokens.*exceeds the position embedding"):
        generate(model, prompts(), max_new_tokens=room + 1, use_cache=use_cache)
