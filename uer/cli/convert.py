"""``uer-convert SRC DST [--arch NAME]``: Hugging Face model directory <-> uer checkpoint; a
TencentPretrain/UER-py ``.bin`` (``--config``, ``--vocab``) -> uer checkpoint."""
from __future__ import annotations

import argparse
import sys

from uer.cli.common import run_command
from uer.convert import convert, supported
from uer.convert.peft import merge

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
  uer-convert outputs/bert_base/<run>/checkpoints/step_1000 ./my-bert-hf --arch BertForMaskedLM

LoRA adapters (model.adapters): a uer LoRA checkpoint converts to a PEFT adapter directory
(adapter_config.json + adapter_model.safetensors) for peft.PeftModel.from_pretrained on the base
exported by uer-convert; a PEFT adapter directory converts to a uer adapter-only checkpoint on --base;
--merge-adapter folds the adapter into its base weights and writes a plain uer checkpoint:
  uer-convert <run>/checkpoints/step_1000 ./my-lora-peft
  uer-convert ./my-lora-peft ./my-lora-uer --base ./base-uer
  uer-convert <run>/checkpoints/step_1000 ./merged-uer --merge-adapter

TencentPretrain / UER-py checkpoints (BERT and GPT-2 layouts) import from their .bin and JSON config:
  uer-convert cluecorpussmall_bert_base.bin ./bert-uer --config models/bert/base_config.json \\
      --vocab models/google_zh_vocab.txt"""


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
    p.add_argument("--merge-adapter", action="store_true",
                   help="SRC is a LoRA checkpoint: write it with the adapter merged into the base weights")
    p.add_argument("--base", metavar="DIR", default=None,
                   help="SRC is a PEFT adapter: the base model it adapts (default: its base_model_name_or_path)")
    p.add_argument("--config", metavar="FILE", default=None,
                   help="SRC is a TencentPretrain/UER-py .bin: their JSON model config (models/bert/base_config.json)")
    p.add_argument("--vocab", metavar="FILE", default=None,
                   help="SRC is a TencentPretrain/UER-py .bin: their vocabulary (vocab.txt), saved as the tokenizer")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv

    def job(args):
        options = parser().parse_args(args)
        if options.merge_adapter:
            merge(options.src, options.dst)
        else:
            convert(options.src, options.dst, options.arch, options.base, options.config, options.vocab)
        return 0

    return run_command(job, argv)


if __name__ == "__main__":
    sys.exit(main())
