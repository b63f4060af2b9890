"""uer-transcribe, in-process on tiny random models and recordings of the shared speech corpus: an
S2T checkpoint transcribes as its Hugging Face export does in transformers (feature extractor,
``generate``), from the uer checkpoint and from the exported directory, greedy and beam; a CTC
checkpoint transcribes by best path and prefix beam; ``--reference`` prints jiwer's WER; bad
inputs are one line."""
from __future__ import annotations

import jiwer
import pytest
import torch
import transformers
from checks import one_line_error, shortest_recordings
from omegaconf import OmegaConf

from uer.cli.transcribe import main
from uer.config import compose_config, resolve
from uer.convert import convert
from uer.data.audio import load_audio, read_manifest
from uer.data.tokenizer import Tokenizer
from uer.generation.speech import Transcriber
from uer.models import build_model
from uer.train.checkpoint import save_checkpoint

SIZES = {"dim": 16, "num_heads": 2, "ffn_dim": 24, "num_layers": 1, "num_decoder_layers": 1, "conv_channels": 16}


@pytest.fixture(scope="module")
def manifest(shared_data, tmp_path_factory):
    """A TSV of the two shortest dev recordings (absolute paths) with their transcripts."""
    return shortest_recordings(shared_data, "dev", 2, tmp_path_factory.mktemp("speech") / "two.tsv")


def checkpoint(preset: str, sizes: dict, manifest, directory, seed: int = 0):
    """A random ``preset`` model with a chars tokenizer of the manifest's transcripts, saved at
    ``directory``; weights far from their initialization so that decoding produces tokens, the
    <pad> row of an S2T word table (and so its logit) zero."""
    text = directory.parent / f"{directory.name}.txt"
    text.write_text("".join(t + "\n" for _, t in read_manifest(manifest)) + "abcdefghijklmnopqrstuvwxyz\n")
    tokenizer = Tokenizer.train([text], kind="chars")
    cfg = compose_config([f"+model={preset}", f"model.vocab_size={tokenizer.vocab_size}",
                          *(f"model.{k}={v}" for k, v in sizes.items())])
    cfg = OmegaConf.merge(cfg, {"model": resolve(cfg).model})
    torch.manual_seed(seed)
    model = build_model(cfg.model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * 0.3)
            if name.endswith("final_norm.weight"):
                p.normal_()
        if model.tgt_embedding is not None:  # never generate <pad>: transformers' S2T would not count its position
            model.tgt_embedding.word.weight[tokenizer.pad_token_id] = 0
    save_checkpoint(directory, model, cfg, tokenizer, None)
    return directory


@pytest.fixture(scope="module")
def s2t(manifest, tmp_path_factory):
    return checkpoint("s2t_tiny", SIZES, manifest, tmp_path_factory.mktemp("s2t") / "ckpt")


def transcribe(capsys, *args) -> list[str]:
    assert main([str(a) for a in args]) == 0
    return capsys.readouterr().out.splitlines()


def test_s2t_checkpoint_transcribes_each_recording_and_scores_wer(s2t, manifest, capsys, tmp_path):
    out = tmp_path / "out.txt"
    assert main([str(s2t), str(manifest), "--max-new-tokens", "6", "--output", str(out),
                 "--reference", str(manifest)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and any(lines)
    references = [t for _, t in read_manifest(manifest)]
    assert f"WER {jiwer.wer(references, lines):.4f} over 2 recordings" in capsys.readouterr().err


@pytest.mark.slow
def test_s2t_transcripts_equal_transformers_from_the_checkpoint_and_its_export(s2t, manifest, capsys, tmp_path):
    convert(s2t, tmp_path / "hf")
    hf = transformers.AutoModelForSpeechSeq2Seq.from_pretrained(tmp_path / "hf").eval()
    extractor = transformers.AutoFeatureExtractor.from_pretrained(tmp_path / "hf")
    paths = [p for p, _ in read_manifest(manifest)]
    inputs = extractor([load_audio(p) for p in paths], sampling_rate=16000, padding=True, return_tensors="pt")
    tokenizer = Transcriber(s2t).tokenizer
    for beam in (1, 3):
        tokens = hf.generate(**inputs, max_new_tokens=6, num_beams=beam, do_sample=False)[:, 1:].tolist()
        expected = [" ".join(tokenizer.decode(row[:row.index(2)] if 2 in row else row, skip_special_tokens=True).split())
                    for row in tokens]
        assert any(expected)
        for source in (s2t, tmp_path / "hf"):
            assert transcribe(capsys, source, *paths, "--max-new-tokens", 6, "--beam", beam) == expected, (beam, source)


@pytest.mark.slow
def test_ctc_checkpoint_transcribes_by_best_path_and_prefix_beam(manifest, capsys, tmp_path):
    sizes = {"dim": 16, "num_heads": 2, "ffn_dim": 24, "num_layers": 1}
    ckpt = checkpoint("ctc_tiny", sizes, manifest, tmp_path / "ctc")
    greedy = transcribe(capsys, ckpt, manifest)
    assert len(greedy) == 2 and any(greedy)
    assert len(transcribe(capsys, ckpt, manifest, "--beam", 4)) == 2


def test_bad_inputs_are_one_line(s2t, tmp_path):
    one_line_error(lambda: Transcriber(tmp_path), str(tmp_path))
    assert main([str(s2t), str(tmp_path / "missing.wav")]) == 2
    assert main([str(s2t), str(tmp_path), "--beam", "0"]) == 2
