"""benchmarks/audio_throughput.py compares like with like (the peer is the converter's transformers
model with the uer model's weights: same parameter count, same loss on the same batch), and training
logs count speech batches in seconds of audio (``uer.train.metrics.audio_seconds_of``)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from checks import assert_parity

from uer.config import compose_config, resolve
from uer.data.fbank import fbank_features
from uer.models import build_model
from uer.train.metrics import Throughput, audio_seconds_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from audio_throughput import BATCHES, OVERRIDES, TOKENS, ctc_batch
from common import converted_peer


def waves(seconds: tuple[float, ...]) -> list[np.ndarray]:
    """Noise waveforms of the given durations at 16 kHz."""
    rng = np.random.default_rng(0)
    return [rng.standard_normal(int(s * 16000)).astype(np.float32) * 0.1 for s in seconds]


def test_speech_batches_count_seconds_of_real_audio():
    audio = waves((1.0, 0.5))
    features, mask = fbank_features(audio)
    assert audio_seconds_of({"input_features": features, "attention_mask": mask}) == pytest.approx(
        (98 + 48) / 100)  # 1 + (samples - 400) // 160 frames of 10 ms
    window = Throughput()
    window.add([ctc_batch(audio, [[5, 6], [7]], None), {"input_ids": torch.ones(2, 3, dtype=torch.long)}])
    samples, tokens, seconds, _ = window.read(torch.device("cpu"))
    assert (samples, tokens, seconds) == (4, 6, pytest.approx(1.5))


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["s2t_tiny", "wav2vec2_tiny", "ctc_tiny"])
def test_the_peer_is_the_same_model(preset):
    kind = preset.split("_")[0]
    cfg = compose_config([f"+model={preset}", *OVERRIDES[kind], *(["model.vocab_size=12"] if kind != "wav2vec2" else [])])
    m = resolve(cfg.model)
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    peer = converted_peer(m, model, TOKENS if kind == "s2t" else None).eval()
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in peer.parameters())
    batch = BATCHES[kind](waves((1.3, 0.9)), [[4, 5, 6], [7, 8]], cfg.data)
    with torch.no_grad():
        out = model(dict(batch))
        ours = out.terms["wav2vec2"].loss_sum if kind == "wav2vec2" else out.loss
        assert_parity(ours, peer(**batch).loss)
