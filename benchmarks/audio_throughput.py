"""Speech training throughput (seconds of audio per second) of uer against ``transformers``, and the
speed of uer's filter banks against ``Speech2TextFeatureExtractor``, on real recordings.

Training: for each ``--preset`` (``s2t_tiny``, ``wav2vec2_tiny``, ``ctc_tiny``) the uer model is built
from the preset and the peer is the model ``uer-convert`` exports it as
(``Speech2TextForConditionalGeneration``, ``Wav2Vec2ForPreTraining``, ``Wav2Vec2ForCTC``), holding the
uer model's weights mapped by the converter's spec (``benchmarks/common.py: converted_peer``); the
script prints both parameter counts and both losses before training (eval mode, where the quantizer
is deterministic). Both sides get the very same batches, built by uer's own collators from the
first ``--utterances`` recordings of ``--manifest`` (``../shared/data/speech/train.tsv``) in manifest
order: S2T filter banks (:func:`uer.data.fbank.fbank_features`, no SpecAugment) with the character
transcripts + eos as labels; wav2vec 2.0 normalized waveforms with the span masks and distractors of
:class:`uer.data.wav2vec2.Wav2Vec2Collator`; CTC normalized waveforms with the transcripts. A step is
forward, backward, ``uer.train.optim.build_optimizer`` (uer's optim config, both sides), zero_grad;
fp32 and bf16 (forward under ``torch.autocast``, as uer's trainer does). S2T's label smoothing is set
to 0 (transformers' S2T loss has none). Rate: seconds of real (unpadded) audio per second.

Features: :func:`uer.data.fbank.fbank_features` against ``Speech2TextFeatureExtractor()(waves,
sampling_rate=16000, padding=True)`` over the same waveforms in batches of ``--batch``; the script
prints the largest difference of the two outputs. Rate: seconds of audio per second.

All comparisons alternate the sides in interleaved rounds (the order flips every round) and report
the median round (``benchmarks/common.py``).

Run: ``python benchmarks/audio_throughput.py`` (see benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from common import DTYPES, Side, add_timing_args, converted_peer, interleaved, ratio, summary, timed_sides, start
from transformers import Speech2TextFeatureExtractor

from uer.config import compose_config, resolve
from uer.data.audio import SAMPLE_RATE, load_audio, read_manifest
from uer.data.fbank import fbank_features
from uer.data.speech import WaveformCollator, ctc_labels, waveform_cell
from uer.data.wav2vec2 import Wav2Vec2Collator
from uer.errors import UerError
from uer.models import build_model
from uer.train.config import OptimConfig, validated

MANIFEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "train.tsv"
TOKENS = SimpleNamespace(bos_token_id=0, pad_token_id=1, eos_token_id=2, unk_token_id=3)
"""Speech2TextTokenizer's special ids (<s> <pad> </s> <unk>), also uer's chars tokenizer's."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", nargs="+", default=["s2t_tiny", "wav2vec2_tiny", "ctc_tiny"],
                   help="s2t_tiny, wav2vec2_tiny, ctc_tiny (empty with --features-only)")
    p.add_argument("--manifest", default=str(MANIFEST), help="TSV of recordings (path<TAB>...transcript)")
    p.add_argument("--utterances", type=int, default=32, help="recordings read from the manifest")
    p.add_argument("--batch", type=int, default=8, help="utterances per step")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per side per precision")
    p.add_argument("--precision", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    p.add_argument("--no-features", action="store_true", help="skip the filter-bank comparison")
    p.add_argument("--seed", type=int, default=0)
    add_timing_args(p, steps=4, rounds=3)
    args = p.parse_args(argv)
    if min(args.steps, args.rounds, args.threads, args.batch) < 1 or args.warmup < 0 \
            or args.utterances < args.batch:
        p.error("steps, rounds, threads and batch must be >= 1, warmup >= 0, utterances >= batch")
    return args


def recordings(manifest: str, n: int) -> tuple[list[np.ndarray], list[str]]:
    """The first ``n`` (16 kHz float32 waveform, transcript) pairs of ``manifest``."""
    try:
        rows = read_manifest(manifest)[:n]
        return [load_audio(path) for path, _ in rows], [text for _, text in rows]
    except UerError as e:
        raise SystemExit(f"error: {e}") from None


def characters(texts: list[str]) -> tuple[list[list[int]], int]:
    """Each transcript as character ids after the four specials of :data:`TOKENS`, and the vocabulary size."""
    chars = sorted(set("".join(texts)))
    index = {c: i + 4 for i, c in enumerate(chars)}
    return [[index[c] for c in text] for text in texts], len(chars) + 4


def s2t_batch(waves: list[np.ndarray], ids: list[list[int]], _data) -> dict[str, torch.Tensor]:
    """Filter banks, their frame mask, labels (transcript + eos, -100 on padding) and the decoder
    inputs (eos as the decoder start, as S2T): the fields of ``data=speech`` without SpecAugment."""
    features, mask = fbank_features(waves)
    width = max(len(row) for row in ids) + 1
    labels = torch.full((len(ids), width), -100)
    for i, row in enumerate(ids):
        labels[i, :len(row) + 1] = torch.tensor([*row, TOKENS.eos_token_id])
    shifted = torch.cat([torch.full((len(ids), 1), TOKENS.eos_token_id), labels[:, :-1]], dim=1)
    inputs = shifted.masked_fill(shifted == -100, TOKENS.pad_token_id)
    return {"input_features": features, "attention_mask": mask, "labels": labels, "decoder_input_ids": inputs,
            "decoder_attention_mask": (labels != -100).long()}


def wav2vec2_batch(waves: list[np.ndarray], _ids, data) -> dict[str, torch.Tensor]:
    """Normalized waveforms, their mask, span masks and distractors (uer's ``Wav2Vec2Collator`` with
    the preset's ``data`` options; one generator per utterance)."""
    collator = Wav2Vec2Collator(list(data.conv_kernel), list(data.conv_stride), data.mask_prob, data.mask_length,
                                data.min_masks, data.num_negatives)
    return collator({"audio": [waveform_cell(w) for w in waves]},
                    [np.random.default_rng([len(w), i]) for i, w in enumerate(waves)])


def ctc_batch(waves: list[np.ndarray], ids: list[list[int]], _data) -> dict[str, torch.Tensor]:
    """Normalized waveforms, their mask and the transcripts (-100 padding), as ``data=speech_ctc``."""
    batch = WaveformCollator(transcripts=False)({"audio": [waveform_cell(w) for w in waves]}, [])
    return {**batch, "labels": ctc_labels(ids)}


BATCHES = {"s2t": s2t_batch, "wav2vec2": wav2vec2_batch, "ctc": ctc_batch}
OVERRIDES = {"s2t": ["model.target.lm.label_smoothing=0.0"], "wav2vec2": [], "ctc": []}


def seconds(batch: dict[str, torch.Tensor]) -> float:
    """What a rate counts: seconds of real audio in the batch (frames of 10 ms for filter banks)."""
    if "input_features" in batch:
        return batch["attention_mask"].sum().item() / 100
    return batch["attention_mask"].sum().item() / SAMPLE_RATE


def train(preset: str, args, waves, ids, vocab_size: int) -> None:
    """Benchmark training of one preset in every precision and print the report."""
    kind = preset.split("_")[0]
    try:
        cfg = compose_config([f"+model={preset}", *OVERRIDES[kind],
                              *([f"model.vocab_size={vocab_size}"] if kind != "wav2vec2" else [])])
        m = resolve(cfg.model)
        torch.manual_seed(args.seed)
        uer_model = build_model(cfg.model)
        peer = converted_peer(m, uer_model, TOKENS if kind == "s2t" else None)
    except UerError as e:
        raise SystemExit(f"error: {e}") from None
    optim = validated(cfg.optim, OptimConfig, "optim")
    data = [BATCHES[kind](waves[i:i + args.batch], ids[i:i + args.batch], cfg.data)
            for i in range(0, len(waves) - args.batch + 1, args.batch)]
    sides = [Side("uer", uer_model, optim, lambda b: uer_model(dict(b)).loss, seconds),
             Side("transformers", peer, optim, lambda b: peer(**b).loss, seconds)]
    uer_model.eval(), peer.eval()
    with torch.no_grad():
        out = uer_model(dict(data[0]))
        ours = out.terms["wav2vec2"].loss_sum if kind == "wav2vec2" else out.loss
        first = [ours.item(), peer(**data[0]).loss.item()]
    uer_model.train(), peer.train()
    audio = sum(seconds(b) for b in data)
    print(f"model {preset} ({type(peer).__name__}): params uer {sides[0].params:,}, transformers {sides[1].params:,}; "
          f"{len(data)} batches of {args.batch} utterances ({audio:.1f} s of audio), cycled, the same tensors on both "
          f"sides: {', '.join(data[0])}")
    print(f"loss before training (eval mode): uer {first[0]:.4f}, transformers {first[1]:.4f} (same weights"
          f"{'; uer: contrastive + diversity loss summed over masked frames, as transformers' if kind == 'wav2vec2' else ''})")
    for precision in args.precision:
        rates = timed_sides(sides, data, precision, args.warmup, args.steps, args.rounds)
        print(f"[train {precision}]")
        for s in sides:
            print(f"  {s.name:<13} {summary(rates[s.name])} s of audio/s")
        print(f"  ratio uer / transformers: {ratio(rates['uer'], rates['transformers'])}\n")


def features(args, waves) -> None:
    """Time uer's filter banks against ``Speech2TextFeatureExtractor`` and print rates and the difference."""
    extractor = Speech2TextFeatureExtractor()
    groups = [waves[i:i + args.batch] for i in range(0, len(waves), args.batch)]

    def theirs(group):
        return extractor(group, sampling_rate=SAMPLE_RATE, padding=True, return_tensors="pt",
                         return_attention_mask=True)["input_features"]

    gap = max((fbank_features(g)[0] - theirs(g)).abs().max().item() for g in groups[:1])
    audio = sum(len(w) for w in waves) / SAMPLE_RATE

    def rate(fn) -> float:
        start = time.perf_counter()
        for g in groups:
            fn(g)
        return audio / (time.perf_counter() - start)

    rates = interleaved({"uer": lambda: rate(fbank_features), "transformers": lambda: rate(theirs)}, args.rounds)
    print(f"[features] 80-bin log-mel + utterance CMVN of {len(waves)} recordings ({audio:.1f} s) in batches of "
          f"{args.batch}, padded; largest |uer - transformers| in the first batch: {gap:.2e}")
    for name, r in rates.items():
        print(f"  {name:<13} {summary(r)} s of audio/s")
    print(f"  ratio uer / transformers: {ratio(rates['uer'], rates['transformers'])}\n")


def main(argv=None) -> None:
    args = parse_args(argv)
    start(args)
    waves, texts = recordings(args.manifest, args.utterances)
    ids, vocab_size = characters(texts)
    print(f"audio: the first {len(waves)} recordings of {args.manifest} ({sum(map(len, waves)) / SAMPLE_RATE:.1f} s), "
          f"character transcripts ({vocab_size} ids); warmup {args.warmup}, then {args.rounds} interleaved rounds x "
          f"{args.steps} timed steps per side, median round\n")
    if not args.no_features:
        features(args, waves)
    for preset in args.preset:
        train(preset, args, waves, ids, vocab_size)


if __name__ == "__main__":
    main()
