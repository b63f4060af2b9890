"""examples/speech: CTC fine-tuning of a wav2vec 2.0 body. WER/CER on hand-made cases, the seeded
training subset, bad input as one line; (slow) in-process runs on four recordings of the shared
corpus: from a uer wav2vec2 checkpoint the CTC head trains, the feature encoder stays frozen, the
body starts from the checkpoint and the best checkpoint transcribes through ``uer-transcribe``'s
Transcriber as the recipe's transcripts say; a Hugging Face ``Wav2Vec2ForPreTraining`` directory is
accepted as the body."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from checks import one_line_error, shortest_recordings
from omegaconf import OmegaConf

from uer.config import compose_config, resolve
from uer.data.audio import read_manifest
from uer.generation.speech import Transcriber
from uer.models import build_model
from uer.models.pretrained import load_weights
from uer.train.checkpoint import save_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `examples.*`
from examples.speech.train import error_rates, main, run, subset

TINY = ["model.dim=16", "model.num_heads=2", "model.ffn_dim=24", "model.num_layers=1",
        "model.conv_dim=[16,16,16,16,16,16,16]", "model.pos_conv_kernel=4", "model.pos_conv_groups=2",
        "model.num_codevectors_per_group=8", "model.codevector_dim=8", "model.proj_codevector_dim=8"]


def test_error_rates_on_hand_made_transcripts():
    # words: 1 substitution + 2 deletions of 5; characters: 1 substitution + 3 deletions of 14
    rates = error_rates(["the cat sat", "a b"], ["the cat sit", ""])
    assert rates == pytest.approx({"wer": 3 / 5, "cer": 4 / 14, "wacc": 2 / 5}, rel=1e-12, abs=1e-12)
    assert error_rates(["in the beginning"], ["in the beginning"]) == {"wer": 0.0, "cer": 0.0, "wacc": 1.0}
    insertions = error_rates(["amen"], ["amen amen amen"])  # insertions push WER past 1
    assert insertions["wer"] == 2.0 and insertions["wacc"] == -1.0
    one_line_error(lambda: error_rates(["a"], ["a", "b"]), "1 reference", "2 hypotheses")
    one_line_error(lambda: error_rates(["a", " "], ["a", "b"]), "non-empty reference")


def test_training_subset_is_seeded_and_sized():
    ids = subset(1600, 0.1, 0, 8)
    assert len(ids) == 160 and np.all(np.diff(ids) > 0) and ids.max() < 1600
    assert np.array_equal(ids, subset(1600, 0.1, 0, 8)) and not np.array_equal(ids, subset(1600, 0.1, 1, 8))
    assert np.array_equal(subset(20, 1.0, 3, 8), np.arange(20))
    one_line_error(lambda: subset(100, 0.0, 0, 8), "task.train_fraction=0.0", "(0, 1]")
    one_line_error(lambda: subset(100, 0.05, 0, 8), "5 of 100 recordings", "fewer than one batch")


def test_bad_input_is_one_line(capsys):
    assert main(["+model=ctc_tiny", "task.train=null"]) == 2
    assert capsys.readouterr().err.strip() == ("error: task.train: a manifest is required (a path<TAB>transcript "
                                                "TSV or a folder)")


@pytest.fixture(scope="module")
def manifest(shared_data, tmp_path_factory) -> Path:
    """A TSV of the four shortest training recordings (absolute paths) with their transcripts."""
    return shortest_recordings(shared_data, "train", 4, tmp_path_factory.mktemp("speech") / "four.tsv")


def recipe(manifest: Path, output: Path, *args: str) -> dict[str, float]:
    return run([f"task.train={manifest}", f"task.dev={manifest}", f"task.test={manifest}", "task.batch_size=4",
                "task.num_proc=1", f"trainer.output_dir={output}", "trainer.progress=false", "trainer.log_every=1",
                *args])


def train_losses(output: Path) -> list[float]:
    rows = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r.get("split") == "train"]


@pytest.mark.slow
def test_head_trains_on_a_uer_wav2vec2_checkpoint(manifest, tmp_path):
    cfg = compose_config(["+model=wav2vec2_tiny", *TINY])
    cfg = OmegaConf.merge(cfg, {"model": resolve(cfg).model})
    torch.manual_seed(0)
    pretrained = build_model(cfg.model)
    save_checkpoint(tmp_path / "w2v", pretrained, cfg, None, None)  # pretraining checkpoints have no tokenizer
    out = tmp_path / "ft"
    result = recipe(manifest, out, f"trainer.init_from={tmp_path / 'w2v'}", "finetune.max_steps=40",
                    "finetune.eval_every=20", "optim.lr=3e-3", "scheduler=constant", "scheduler.warmup_steps=0")
    losses = train_losses(out)
    assert len(losses) == 40 and np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    assert set(result) == {f"{s}/{k}" for s in ("dev", "test") for k in ("wer", "cer", "wacc")}
    best = build_model(resolve(OmegaConf.load(out / "best" / "config.yaml")).model)
    load_weights(best, out / "best" / "model.safetensors")
    before, after = pretrained.state_dict(), best.state_dict()
    frozen = [k for k in before if k.startswith("embedding.feature.")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # the feature encoder is not trained
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("encoder."))
    lines = (out / "dev_transcripts.txt").read_text(encoding="utf-8").splitlines()
    paths = [p for p, _ in read_manifest(manifest)]
    assert len(lines) == 4 and Transcriber(out / "best").transcribe(paths) == lines
    assert result["dev/wer"] == pytest.approx(error_rates([t for _, t in read_manifest(manifest)], lines)["wer"])


@pytest.mark.slow
def test_a_hugging_face_wav2vec2_directory_is_the_body(manifest, tmp_path):
    config = transformers.Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=24, conv_dim=(16,) * 7, num_conv_pos_embeddings=4,
                                         num_conv_pos_embedding_groups=2, codevector_dim=8, proj_codevector_dim=8,
                                         num_codevectors_per_group=8)
    torch.manual_seed(0)
    transformers.Wav2Vec2ForPreTraining(config).save_pretrained(tmp_path / "hf")
    hf = transformers.Wav2Vec2ForPreTraining.from_pretrained(tmp_path / "hf")
    out = tmp_path / "ft"
    recipe(manifest, out, f"trainer.init_from={tmp_path / 'hf'}", "finetune.max_steps=2", "finetune.eval_every=1")
    best = build_model(resolve(OmegaConf.load(out / "best" / "config.yaml")).model)
    load_weights(best, out / "best" / "model.safetensors")
    first_conv = next(p for n, p in best.named_parameters() if n.startswith("embedding.feature.") and p.dim() == 3)
    torch.testing.assert_close(first_conv, hf.wav2vec2.feature_extractor.conv_layers[0].conv.weight,
                               rtol=0, atol=0)  # copied, then frozen
