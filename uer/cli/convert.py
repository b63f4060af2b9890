"""``uer-convert SRC DST [--arch NAME]``: Hugging Face model directory <-> uer checkpoint."""
from __future__ import annotations

import argparse
import sys

from uer.cli.common import run_command
from uer.convert import convert, supported

DESCRIPTION = """Converts a Hugging Face model directory (config.json + model.safetensors or
pytorch_model.bin + tokenizer files) into a uer checkpoint, or a uer checkpoint (config.yaml +
model.safetensors + tokenizer) into a Hugging Face directory that transformers' Auto classes load
offline. The direction is detected from SRC; DST must not exist and is written atomically.
Conversion is exact: weights come back bit for bit, and anything that cannot (an unmapped tensor,
a config feature the other side lacks) is an error."""

EPILOG = """supported families (model_type: architectures; the first that fits is the default export):
{families}

Encoder-only architectures (BertModel, ViTModel) import with their missing heads initialized and
listed under convert.initialized in config.yaml; exporting to them leaves those heads out.

examples:
  uer-convert ./all-MiniLM-L6-v2 ./minilm-uer
  uer-pretrain +model=bert_base model.dim=384 model.num_layers=6 model.ffn_dim=1536 \\
      trainer.init_from=./minilm-uer data.corpus=my.txt
  uer-convert outputs/bert_base/<run>/checkpoints/step_1000 ./my-bert-hf --arch BertForMaskedLM"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="uer-convert", description=DESCRIPTION,
                                epilog=EPILOG.format(families=supported()),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="a Hugging Face model directory or a uer checkpoint directory")
    p.add_argument("dst", help="the directory to create (must not exist)")
    p.add_argument("--arch", metavar="NAME", default=None,
                   help="Hugging Face architecture: the head to export (default: from the uer target, "
                        "mlm+sp -> *ForPreTraining, mlm -> *ForMaskedLM, lm -> GPT2LMHeadModel, "
                        "cls -> ViTForImageClassification, seq_cls / token_cls / span -> *ForSequenceClassification / "
                        "*ForTokenClassification / *ForQuestionAnswering), or the one to read when config.json names "
                        "none or several")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv

    def job(args):
        options = parser().parse_args(args)
        convert(options.src, options.dst, options.arch)
        return 0

    return run_command(job, argv)


if __name__ == "__main__":
    sys.exit(main())
