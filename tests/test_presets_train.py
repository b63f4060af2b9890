"""Every preset trains: at tiny sizes, through the real pretraining path (its data processor,
collator, parts and target), and its training loss falls."""
from __future__ import annotations

import json
import math

import pytest
from omegaconf import OmegaConf
from runs import SPEECH_PROCESSORS, composed, processor_of, run_args

from uer.config import compose_config, presets
from uer.train.run import pretrain

TINY = {"dim": 32, "emb_dim": 16, "num_layers": 2, "num_heads": 2, "ffn_dim": 64, "image_size": 32, "patch_size": 4,
        "codebook_size": 256, "channels": 1}
"""Sizes every preset is trained at in the quick suite (keys a preset lacks are left out): the
preset's parts, options and data processor at a fraction of the cost of its real size (BEiT's
codebook too: fitting 8,192 centroids costs more than the run; one channel for the grayscale digits
of image classification and MIM)."""
LOSS_FALL = 0.2
"""Nats the mean training loss of the last 5 steps must be below that of the first 5 (the step-to-step
noise of these tiny runs is about 0.1; a model that does not learn stays within it)."""
SCHEDULE = {"image": (100, 32, "1e-3"), "text": (30, 8, "3e-3"), "contrastive": (150, 32, "5e-4")}
"""Steps, batch size and learning rate of the tiny runs: a ViT sits on the ln(10) plateau of the digits
for about 50 steps before it learns; the text objectives fall from the first steps; CLIP needs a
batch of many pairs and collapses to the ln(batch) plateau at higher rates."""


SLOW_ONLY = ("lstm", "gru", "bilstm", "gatedcnn_9", "gatedcnn_13")
"""Recurrent and convolutional presets trained at tiny size in the slow suite only (each run costs about
what gpt2_tiny's does); the quick suite trains elmo, the same recurrent encoder under the bilm target,
and tests/test_rnn_cnn.py tests the encoders' padding and directions."""


def tiny(preset: str) -> list[str]:
    """``model.*`` overrides that shrink ``preset`` to :data:`TINY` sizes (ALBERT keeps a factorized
    embedding: ``emb_dim`` 16 projected to 32; elsewhere ``emb_dim`` follows ``dim``). Two-tower
    presets (CLIP: ``model.text`` and ``model.vision``) take clip_tiny's sizes and init."""
    model = composed(preset).model
    if "text" in model and "vision" in model:
        small = composed("clip_tiny").model
        return [f"model.{section}.{k}={v}" for section in ("text", "vision") for k, v in small[section].items()] + \
            [f"model.{k}={small[k]}" for k in ("max_seq_length", "projection_dim", "init_std")]
    sizes = {k: v for k, v in TINY.items() if k in model}
    if processor_of(preset) != "ImageProcessor":  # image-text pixels are RGB, as CLIP's processor makes them
        sizes.pop("channels", None)
    if "emb_dim" in model and OmegaConf.is_interpolation(model, "emb_dim"):
        del sizes["emb_dim"]
    args = [f"model.{k}={v}" for k, v in sizes.items()]
    if published(preset):  # a published vocabulary (LLaMA family): the tokenizer's at tiny size
        args.append("model.vocab_size=null")
    if OmegaConf.select(model, "encoder.attention.num_kv_heads"):  # grouped-query: 1 kv head of TINY's 2
        args.append("model.encoder.attention.num_kv_heads=1")
    return args


def published(preset: str) -> bool:
    """A published size with its own vocabulary (llama2_7b, qwen2_0_5b ...): trained at tiny size in
    the slow suite only, its parts covered in the quick suite by the family's tiny preset."""
    return composed(preset).model.get("vocab_size") is not None


def distinct_at_tiny_size() -> list[str]:
    """One preset per distinct tiny configuration: presets that differ only in sizes (bert_base,
    bert_mini, bert_tiny) are the same model at :data:`TINY` sizes and train once. Speech presets
    train on recordings instead (:func:`test_speech_presets_train_on_short_recordings`)."""
    seen, kept = set(), []
    for preset in presets():
        if processor_of(preset) in SPEECH_PROCESSORS:
            continue
        cfg = OmegaConf.merge(composed(preset), OmegaConf.from_dotlist([*tiny(preset), "model.name=null"]))
        key = OmegaConf.to_yaml(cfg)
        if key not in seen:
            seen.add(key)
            kept.append(preset)
    return kept


@pytest.mark.parametrize("preset", [pytest.param(p, marks=pytest.mark.slow) if published(p) or p in SLOW_ONLY else p
                                    for p in distinct_at_tiny_size()])
def test_every_preset_trains_at_tiny_size_and_its_loss_falls(preset, small_corpus, tmp_path):
    kind = "image" if processor_of(preset) == "ImageProcessor" else "text"
    steps, batch_size, lr = SCHEDULE["contrastive" if "clr" in composed(preset).model.target else kind]
    args = run_args(preset, small_corpus, tmp_path / "run", steps, *tiny(preset), f"data.batch_size={batch_size}",
                    f"optim.lr={lr}", "scheduler=constant", "trainer.log_every=1", "trainer.save_every=0")
    metrics = pretrain(compose_config(args))
    assert math.isfinite(metrics["loss"]) and metrics["loss"] > 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in rows if row["split"] == "train"]
    assert len(losses) == steps
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - LOSS_FALL, f"{preset}: loss {first:.3f} over the first 5 steps, {last:.3f} over the last 5"
    (checkpoint,) = (tmp_path / "run" / "checkpoints").iterdir()
    assert {"model.safetensors", "config.yaml", "state"} <= {p.name for p in checkpoint.iterdir()}
    assert list((tmp_path / "run" / "tensorboard").iterdir())


SPEECH_PRESETS = {"s2t_tiny": (20, 8, "3e-3"), "wav2vec2_tiny": (30, 8, "3e-3"), "ctc_tiny": (20, 8, "3e-3")}
"""Speech presets trained in the slow suite (steps, batch size, learning rate): a 20-step run on 16
recordings of 1.3-2 s costs ~10 s, too much for the quick suite (the waveform presets more: 84 s for
ctc_tiny and 126 s for wav2vec2_tiny's 30 steps on a machine at load 10 with 2 cores)."""


@pytest.fixture
def short_recordings(shared_data, tmp_path):
    """A manifest of the 16 shortest recordings of the shared speech training set (absolute paths)."""
    lines = (shared_data / "speech" / "train.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    path, duration, text = (header.index(k) for k in ("path", "duration_s", "transcript"))
    rows = sorted((line.split("\t") for line in lines[1:]), key=lambda r: float(r[duration]))[:16]
    tsv = tmp_path / "short.tsv"
    tsv.write_text("path\ttranscript\n" + "".join(f"{shared_data / 'speech' / r[path]}\t{r[text]}\n" for r in rows))
    return tsv


@pytest.mark.slow
@pytest.mark.parametrize("preset", list(SPEECH_PRESETS))
def test_speech_presets_train_on_short_recordings(preset, short_recordings, tmp_path):
    steps, batch_size, lr = SPEECH_PRESETS[preset]
    args = run_args(preset, short_recordings, tmp_path / "run", steps, *tiny(preset), f"data.batch_size={batch_size}",
                    f"optim.lr={lr}", "scheduler=constant", "trainer.log_every=1", "trainer.save_every=0")
    pretrain(compose_config(args))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in rows if row["split"] == "train"]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert len(losses) == steps and last < first - LOSS_FALL, f"{preset}: loss {first:.3f} -> {last:.3f}"
