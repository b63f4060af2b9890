"""``uer-transcribe CHECKPOINT FILES_OR_MANIFESTS... [--beam N] [--output FILE] [--reference MANIFEST]``:
speech to text with an S2T or CTC checkpoint, one output line per recording."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from uer.cli.common import run_command, write_lines
from uer.errors import UerError

DESCRIPTION = """Transcribes recordings (wav/flac/ogg, any sample rate, resampled to 16 kHz) with a uer
checkpoint or a Hugging Face model directory (converted on the fly): an S2T encoder-decoder
(s2t_* presets, Speech2TextForConditionalGeneration) decodes with greedy or beam search, a CTC model
(ctc_tiny, Wav2Vec2ForCTC) with best-path or prefix beam search. Inputs are audio files and
manifests (a path<TAB>transcript TSV or a folder), taken in order; the transcripts go to stdout or
--output, one line per recording. With --reference (a manifest holding the same recordings) the word
error rate (jiwer) is printed to stderr."""

EPILOG = """examples:
  uer-transcribe outputs/s2t_tiny/<run>/checkpoints/step_0002000 ../shared/data/speech/human
  uer-transcribe CKPT a.wav b.flac --beam 5 --output out.txt
  uer-transcribe CKPT ../shared/data/speech/dev.tsv --reference ../shared/data/speech/dev.tsv"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="uer-transcribe", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a uer checkpoint directory or a Hugging Face model directory")
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_MANIFEST", help="audio files, TSV manifests or folders")
    p.add_argument("--beam", type=int, default=1, metavar="N", help="beam width (1 = greedy / best path)")
    p.add_argument("--output", metavar="FILE", help="write the transcripts here instead of stdout")
    p.add_argument("--reference", metavar="MANIFEST",
                   help="a manifest with the reference transcripts of the recordings: print the WER")
    p.add_argument("--max-new-tokens", type=int, default=200, help="longest S2T transcript, in tokens")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1 ...")
    p.add_argument("--allow-target", action="append", default=[], metavar="PREFIX",
                   help="trust classes under this _target_ prefix in the checkpoint config (besides uer.)")
    return p


def references(manifest: str, paths: list[str]) -> list[str]:
    """The reference transcript of each of ``paths`` from ``manifest`` (matched by resolved path).

    Raises:
        UerError: a bad manifest, or a recording it does not list.
    """
    from uer.data.audio import read_manifest  # lazy: soundfile and numpy load only past --help

    listed = {str(Path(path).resolve()): text for path, text in read_manifest(manifest)}
    missing = [p for p in paths if str(Path(p).resolve()) not in listed]
    if missing:
        raise UerError(f"--reference {manifest}: has no transcript for {missing[0]}"
                       + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
    return [listed[str(Path(p).resolve())] for p in paths]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv

    def job(args):
        options = parser().parse_args(args)
        for name in ("beam", "batch_size", "max_new_tokens"):
            if getattr(options, name) < 1:
                raise UerError(f"--{name.replace('_', '-')}={getattr(options, name)}: must be >= 1")
        # lazy, deliberately: torch loads only past --help and bad options
        from uer.generation.speech import Transcriber, recordings  # lazy
        from uer.train.config import check_device  # lazy
        from uer.train.trainer import pick_device  # lazy

        check_device(options.device, "--device")
        paths = recordings(options.inputs)
        expected = references(options.reference, paths) if options.reference else None
        transcriber = Transcriber(options.checkpoint, options.allow_target, pick_device(options.device))
        lines = transcriber.transcribe(paths, beam=options.beam, batch_size=options.batch_size,
                                       max_new_tokens=options.max_new_tokens)
        write_lines(lines, options.output)
        if expected is not None:
            import jiwer  # lazy: only --reference needs it

            print(f"WER {jiwer.wer(expected, lines):.4f} over {len(lines)} recordings", file=sys.stderr)
        return 0

    return run_command(job, argv)


if __name__ == "__main__":
    sys.exit(main())
