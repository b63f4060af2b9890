"""Audio data (issue 16): decoding and manifests, Kaldi filter banks equal to transformers'
Speech2TextFeatureExtractor, the character tokenizer, the speech processors and the S2T and
waveform collators, on a few recordings of the shared speech corpus."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from checks import assert_parity, one_line_error
from transformers import Speech2TextFeatureExtractor, Wav2Vec2FeatureExtractor
from uer.preprocess.build import build_dataset, load_dataset_dir
from uer.preprocess.registry import options_from_config

from uer.config import compose_config
from uer.data.audio import SAMPLE_RATE, load_audio, read_manifest
from uer.data.collators import make_collator, shipped_data_config
from uer.data.fbank import fbank_features, num_frames
from uer.data.speech import (
    SpeechToTextCollator,
    WaveformCollator,
    features_cell,
    spec_augment,
    stored_features,
    stored_waveform,
    waveform_cell,
)
from uer.data.tokenizer import Tokenizer
from uer.train.run import prepare

MASKS = {"freq_mask": 27, "freq_masks": 2, "time_mask": 40, "time_masks": 2, "time_mask_ratio": 1.0}


@pytest.fixture(scope="module")
def manifest(shared_data, tmp_path_factory):
    """A 4-line TSV over the first recordings of the shared training set (absolute paths), with
    the shared corpus's header and extra columns."""
    lines = (shared_data / "speech" / "train.tsv").read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], [line.split("\t") for line in lines[1:5]]
    path_col = header.split("\t").index("path")
    for row in rows:
        row[path_col] = str(shared_data / "speech" / row[path_col])
    tsv = tmp_path_factory.mktemp("speech") / "small.tsv"
    tsv.write_text("\n".join([header, *("\t".join(row) for row in rows)]) + "\n", encoding="utf-8")
    return tsv


@pytest.fixture(scope="module")
def waveforms(manifest):
    return [load_audio(path) for path, _ in read_manifest(manifest)]


def test_load_audio_resamples_and_averages_channels(tmp_path):
    t = np.arange(44100 * 2) / 44100
    left, right = np.sin(2 * np.pi * 440 * t) * 0.5, np.zeros_like(t)
    soundfile.write(tmp_path / "stereo.flac", np.stack([left, right], 1), 44100)
    wave = load_audio(tmp_path / "stereo.flac")
    assert wave.dtype == np.float32 and wave.shape == (2 * SAMPLE_RATE,)
    assert abs(np.abs(wave[1000:-1000]).max() - 0.25) < 0.01  # averaged: half the left channel's 0.5


def test_bad_audio_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "text.wav").write_text("not audio")
    soundfile.write(tmp_path / "empty.wav", np.zeros((0, 1)), SAMPLE_RATE)
    one_line_error(lambda: load_audio(tmp_path / "missing.wav"), "missing.wav", "not found")
    one_line_error(lambda: load_audio(tmp_path / "text.wav"), "text.wav", "cannot be decoded")
    one_line_error(lambda: load_audio(tmp_path / "empty.wav"), "empty.wav", "no samples")


def test_manifest_forms_and_bad_rows(tmp_path):
    soundfile.write(tmp_path / "a.wav", np.zeros(800), SAMPLE_RATE)
    (tmp_path / "a.txt").write_text("hello  world\n")
    (tmp_path / "plain.tsv").write_text("a.wav\thello world\n")
    (tmp_path / "header.tsv").write_text("id\taudio\tsentence\tx\n1\ta.wav\thello\t9\n")
    assert read_manifest(tmp_path / "plain.tsv") == [(str(tmp_path / "a.wav"), "hello world")]
    assert read_manifest(tmp_path / "header.tsv") == [(str(tmp_path / "a.wav"), "hello")]
    assert read_manifest(tmp_path) == [(str(tmp_path / "a.wav"), "hello  world")]
    for name, text, needles in [("three.tsv", "a.wav\thi\tx\n", ("line 1", "path<TAB>transcript")),
                                ("blank.tsv", "a.wav\t \n", ("line 1", "empty transcript")),
                                ("gone.tsv", "\nb.wav\thi\n", ("line 2", "b.wav", "not found")),
                                ("short.tsv", "id\tpath\ttranscript\n1\ta.wav\n", ("line 2", "header names 3")),
                                ("notext.tsv", "id\tpath\n1\ta.wav\n", ("no transcript column",))]:
        (tmp_path / name).write_text(text)
        one_line_error(lambda path=tmp_path / name: read_manifest(path), name, *needles)
    (tmp_path / "bare.tsv").write_text("a.wav\n")
    assert read_manifest(tmp_path / "bare.tsv", transcripts=False) == [(str(tmp_path / "a.wav"), "")]
    one_line_error(lambda: read_manifest(tmp_path / "nowhere.tsv"), "nowhere.tsv", "not found")
    (tmp_path / "latin1.tsv").write_bytes("a.wav\tcaf\xe9\n".encode("latin-1"))
    one_line_error(lambda: read_manifest(tmp_path / "latin1.tsv"), "latin1.tsv", "not a UTF-8")


def test_fbank_equals_speech2text_feature_extractor(waveforms):
    rng = np.random.default_rng(0)
    batch = [*waveforms[:3], (rng.standard_normal(561) * 0.1).astype(np.float32), waveforms[3][:12345]]
    expected = Speech2TextFeatureExtractor()(batch, padding=True, sampling_rate=SAMPLE_RATE, return_tensors="pt")
    features, mask = fbank_features(batch)
    assert features.shape == (5, max(num_frames(len(w)) for w in batch), 80) and features.dtype == torch.float32
    assert torch.equal(mask, expected["attention_mask"].long())
    assert mask[3].sum() == 2 and mask[4].sum() == num_frames(12345) == 75  # odd lengths: 2 and 75 frames
    assert_parity(features, expected["input_features"])


def test_fbank_of_silence_is_finite_and_short_audio_is_refused():
    features, _ = fbank_features([np.zeros(4000, dtype=np.float32)])
    assert features.abs().max() < 1e-6  # transformers divides 0 by a 0 std here
    one_line_error(lambda: fbank_features([np.zeros(399, dtype=np.float32)]), "waveform 0", "400 samples")


def test_char_tokenizer_round_trip(tmp_path):
    (tmp_path / "t.txt").write_text("and the soldiers\nthou  wentest\n")
    tokenizer = Tokenizer.train([tmp_path / "t.txt"], kind="chars", lowercase=False)
    assert [tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id] == [1, 2, 3]
    assert tokenizer.vocab_size == 5 + len(set("andthesoldiersthouwentest"))
    ids = tokenizer.encode_batch([" thou  and\tX "])[0]
    assert ids[4] == tokenizer.token_to_id("|") == 4 and ids[-1] == tokenizer.unk_token_id
    assert tokenizer.decode(ids) == "thou and <unk>"
    tokenizer.save(tmp_path / "tok")
    assert Tokenizer.load(tmp_path / "tok").fingerprint() == tokenizer.fingerprint()


def test_sentencepiece_trained_on_transcripts(manifest):
    options = options_from_config(shipped_data_config("speech", corpus=str(manifest), tokenizer="sentencepiece",
                                                      vocab_size=40))
    tokenizer = Tokenizer.load(options.tokenizer_spec())
    assert [tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id] == [1, 2, 3]
    assert tokenizer.vocab_size == 40 and options.tokenizer_spec() == options.tokenizer_spec()
    for _, text in read_manifest(manifest):
        ids = tokenizer.encode_batch([text])[0]
        assert tokenizer.decode(ids) == text and tokenizer.unk_token_id not in ids


def test_processor_rows_hold_features_waveforms_and_transcripts(manifest, waveforms):
    pairs = read_manifest(manifest)
    fbank, wave = (options_from_config(shipped_data_config(name, corpus=str(manifest), num_proc=1))
                   for name in ("speech", "speech_ctc"))
    assert fbank.tokenizer_spec() == wave.tokenizer_spec()  # one cached chars tokenizer per transcripts
    tokenizer = Tokenizer.load(fbank.tokenizer_spec())
    (shard,) = fbank.plan().shards
    for row, audio_row, waveform, (_, text) in zip(fbank.generate(shard, tokenizer), wave.generate(shard, tokenizer),
                                                   waveforms, pairs):
        assert tokenizer.decode(row["labels"]) == text and audio_row["labels"] == row["labels"]
        assert np.array_equal(stored_features(row["input_features"]), fbank_features([waveform])[0][0].numpy())
        pcm = stored_waveform(audio_row["audio"])
        assert pcm.shape == waveform.shape and np.abs(pcm - waveform).max() <= 2**-15


def test_untranscribed_waveforms_for_self_supervised_pretraining(tmp_path, waveforms):
    soundfile.write(tmp_path / "a.wav", waveforms[0][:8000], SAMPLE_RATE)
    (tmp_path / "paths.tsv").write_text("a.wav\n")
    options = options_from_config(shipped_data_config("speech_ctc", corpus=str(tmp_path / "paths.tsv"),
                                                      transcripts=False))
    assert options.tokenizer_spec() is None
    rows = list(options.generate(options.plan().shards[0], None))
    assert [row["labels"] for row in rows] == [[]] and len(rows[0]["audio"]) == 2 * 8000
    batch = WaveformCollator(transcripts=False)({"audio": [rows[0]["audio"]]}, [])
    assert set(batch) == {"input_values", "attention_mask"} and batch["input_values"].shape == (1, 8000)


@pytest.mark.slow
def test_preprocessed_speech_dataset_trains_the_collators(manifest):
    for name, field in (("speech", "input_features"), ("speech_ctc", "input_values")):
        cfg = shipped_data_config(name, corpus=str(manifest), num_proc=2)
        dataset, meta, tokenizer = load_dataset_dir(build_dataset(options_from_config(cfg)))
        assert meta["num_rows"] == 4 and (Path(meta["tokenizer"]) / "tokenizer.json").is_file()
        batch = make_collator(cfg, tokenizer)(dataset[[0, 1, 2, 3]], [np.random.default_rng(i) for i in range(4)])
        assert batch[field].shape[0] == 4 and tokenizer.decode(batch["labels"][0][:5].tolist()) == "sayin"


def test_processor_refuses_long_transcripts_and_missing_corpus(manifest):
    cfg = shipped_data_config("speech", corpus=str(manifest), num_proc=1, seq_length=20)
    one_line_error(lambda: build_dataset(options_from_config(cfg)), "train-0000.ogg", "data.seq_length=20")
    one_line_error(lambda: build_dataset(options_from_config(shipped_data_config("speech"))), "data.corpus")


def s2t_rows(waveforms, tokenizer):
    banks = [fbank_features([w])[0][0].numpy() for w in waveforms]
    return {"input_features": [features_cell(b) for b in banks],
            "labels": tokenizer.encode_batch(["in the", "beginning god"] * (len(waveforms) // 2))}, banks


def test_s2t_collator_targets_and_spec_augment(waveforms, tmp_path):
    (tmp_path / "t.txt").write_text("in the beginning god\n")
    tokenizer = Tokenizer.train([tmp_path / "t.txt"], kind="chars")
    rows, banks = s2t_rows(waveforms, tokenizer)
    collate = SpeechToTextCollator(tokenizer, **MASKS)
    batch = collate(rows, [np.random.default_rng(i) for i in range(4)])
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    assert batch["labels"].shape == (4, 14) and batch["labels"][0, 6] == eos and (batch["labels"][0, 7:] == -100).all()
    assert batch["decoder_input_ids"][0, 0] == eos and batch["decoder_input_ids"][0, 7] == eos and batch["decoder_input_ids"][0, 8] == pad
    assert torch.equal(batch["decoder_input_ids"][1, 1:], batch["labels"][1, :-1])
    assert batch["decoder_attention_mask"].sum(1).tolist() == [7, 14, 7, 14]
    frames = batch["attention_mask"].sum(1).tolist()
    assert frames == [len(b) for b in banks] and batch["input_features"].shape == (4, max(frames), 80)
    for i, bank in enumerate(banks):
        augmented = batch["input_features"][i, :frames[i]].numpy()
        masked = augmented != bank
        assert (augmented[masked] == 0).all() and masked.any()
        channels, times = np.where(masked.all(0))[0], np.where(masked.all(1))[0]
        assert 0 < len(channels) <= 2 * 27 and len(times) <= 2 * 40
        alone = spec_augment(bank, np.random.default_rng(i), **MASKS)  # the row's draws, without neighbours
        assert np.array_equal(alone, augmented)
    plain = collate.evaluation()(rows, [np.random.default_rng(i) for i in range(4)])
    assert np.array_equal(plain["input_features"][2, :frames[2]].numpy(), banks[2]) and collate.spec_augment


def test_waveform_collator_equals_wav2vec2_feature_extractor(waveforms):
    cells = [waveform_cell(w) for w in waveforms]
    batch = WaveformCollator()({"audio": cells, "labels": [[5, 6], [7], [5, 6, 7], [8]]}, [])
    expected = Wav2Vec2FeatureExtractor(return_attention_mask=True)(
        [stored_waveform(c) for c in cells], padding=True,
        sampling_rate=SAMPLE_RATE, return_tensors="pt")
    assert torch.equal(batch["attention_mask"], expected["attention_mask"].long())
    assert_parity(batch["input_values"], expected["input_values"])
    assert batch["labels"].tolist()[1] == [7, -100, -100]


def test_shipped_speech_configs_build_their_collators(manifest):
    tokenizer = Tokenizer.train([manifest], kind="chars")
    s2t = make_collator(shipped_data_config("speech"), tokenizer)
    assert isinstance(s2t, SpeechToTextCollator) and s2t.masks["freq_mask"] == 27 and s2t.masks["time_mask"] == 100
    assert isinstance(make_collator(shipped_data_config("speech_ctc"), tokenizer), WaveformCollator)
    one_line_error(lambda: make_collator(shipped_data_config("speech", time_mask_ratio=2), tokenizer),
                   "data.time_mask_ratio=2")


def test_s2t_run_augments_training_batches_only(manifest, tmp_path):
    lines = manifest.read_text(encoding="utf-8").splitlines()
    (tmp_path / "twelve.tsv").write_text("\n".join([lines[0], *lines[1:] * 3]) + "\n", encoding="utf-8")
    trainer = prepare(compose_config(["+model=s2t_tiny", f"data.corpus={tmp_path / 'twelve.tsv'}", "data.num_proc=1",
                                      "data.batch_size=2", f"trainer.output_dir={tmp_path / 'out'}"]))
    assert trainer.train_loader.collate.spec_augment and not trainer.eval_loader.collate.spec_augment
