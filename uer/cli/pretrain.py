"""``uer-pretrain +model=<preset> [key=value ...]``: pretrain a model (see the README)."""
from __future__ import annotations

import sys

from uer.cli.common import run_command

USAGE = """usage: uer-pretrain +model=<preset> [group=option ...] [key=value ...]

Pretrains a model preset on the embedded King James Bible corpus, or on your data:
  uer-pretrain +model=bert_mini data.corpus=my.txt data.tokenizer=vocab.txt trainer.max_steps=1000
Swap parts or groups: model/target=mlm data=mlm optim=sgd scheduler=cosine
Print the composed config and exit: --cfg
Presets: {presets}"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv

    def job(args):
        from uer.config import compose_config, presets

        if args and args[0] in ("-h", "--help"):
            print(USAGE.format(presets=", ".join(presets())))
            return 0
        show = "--cfg" in args
        cfg = compose_config([a for a in args if a != "--cfg"])
        if show:
            from omegaconf import OmegaConf
            print(OmegaConf.to_yaml(cfg))
            return 0
        from uer.train.run import pretrain  # torch and transformers load only for real work

        pretrain(cfg)
        return 0

    return run_command(job, argv)


if __name__ == "__main__":
    sys.exit(main())
