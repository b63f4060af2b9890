"""The translation preset learns a toy language pair end to end: `mt` preprocessing with a trained
tokenizer per side, training through the one Trainer, then greedy generation from the checkpoint."""
from __future__ import annotations

import random

import pytest

from uer.config import compose_config
from uer.generation.text import generate_text, load_generator
from uer.train.checkpoint import list_checkpoints
from uer.train.run import pretrain

WORDS = "sun moon star tree river stone bird fish cloud wind fire snow".split()


def translate(sentence: str) -> str:
    """The toy target language: every word spelled backwards with an ``a`` after it."""
    return " ".join(word[::-1] + "a" for word in sentence.split())


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5))) for _ in range(n)]


@pytest.mark.slow
def test_transformer_learns_a_toy_language_pair(tmp_path):
    corpus = tmp_path / "pairs.tsv"
    corpus.write_text("".join(f"{s}\t{translate(s)}\n" for s in sentences(2000, seed=0)), encoding="utf-8")
    pretrain(compose_config([
        "+model=transformer_tiny", f"data.corpus={corpus}", f"trainer.output_dir={tmp_path / 'run'}",
        "data.vocab_size=100", "data.seq_length=12", "data.tgt_seq_length=12", "data.batch_size=32",
        "data.num_proc=1", "data.eval_samples=32", "model.dropout=0", "optim.lr=3e-3", "trainer.max_steps=400",
        "trainer.eval_every=0", "trainer.save_every=0", "trainer.progress=false"]))
    model, tokenizer, start = load_generator(list_checkpoints(tmp_path / "run")[-1])
    held_out = sentences(40, seed=1)  # short ones may also be in the training set; long ones are new
    outputs = generate_text(model, tokenizer, held_out, batch_size=20, decoder_start_token_id=start,
                            max_new_tokens=16)
    correct = sum(out == translate(s) for out, s in zip(outputs, held_out))
    assert correct >= 0.9 * len(held_out), list(zip(held_out, outputs))[:5]
