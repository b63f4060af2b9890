"""``uer-pretrain +model=<preset> [key=value ...]``: pretrain a model (see the README).

Under ``uer-torchrun --nproc_per_node=N -m uer.cli.pretrain ...`` (torchrun, exiting with the run's
status: :mod:`uer.cli.launch`) every process runs this; only rank 0 logs and prints errors. Exit
status: 0 done, 2 bad input or a failed run (``error: ...``: a non-finite weight or loss, a full
disk), 143 stopped by SIGTERM after writing a checkpoint (resume with ``trainer.resume=auto``).
"""
from __future__ import annotations

import logging
import os
import sys

from uer.cli.common import print_config, run_command, split_hydra_flags
from uer.config import compose_config, presets
from uer.errors import UerError

USAGE = """usage: uer-pretrain +model=<preset> [group=option ...] [key=value ...]

Pretrains a model preset on the embedded King James Bible corpus, or on your data:
  uer-pretrain +model=bert_mini data.corpus=my.txt data.tokenizer=vocab.txt trainer.max_steps=1000
Swap parts or groups: model/target=mlm data=mlm optim=sgd scheduler=cosine
Print the composed config and exit: --cfg [--package model] [--resolve]
Print the parameter count (built on the meta device, nothing allocated) and exit: --info
These flags and -h/--help may stand anywhere on the line.
On N processes: uer-torchrun --nproc_per_node=N -m uer.cli.pretrain +model=<preset> [trainer.strategy=fsdp2]
Presets: {presets}"""
PREEMPTED = 143
"""Exit status after SIGTERM (128 + 15), once the checkpoint of the last finished step is written."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv

    def job(args):
        flags, overrides = split_hydra_flags(args)
        if flags.help:
            print(USAGE.format(presets=", ".join(presets())))
            return 0
        cfg = compose_config(overrides)
        if flags.cfg:
            print_config(cfg, flags)
            return 0
        if flags.info:
            from uer.models.info import describe  # lazy: as pretrain below

            print(describe(cfg.model))
            return 0
        # lazy, deliberately: torch loads only past --help/--cfg (0.2 s instead of 2-3 s on an idle machine)
        from uer.train.run import pretrain  # lazy
        from uer.train.trainer import Preempted  # lazy

        main_rank = os.environ.get("RANK", "0") == "0"
        if not main_rank:
            logging.getLogger("uer").setLevel(logging.WARNING)
        try:
            pretrain(cfg)
        except Preempted as e:
            if main_rank:
                print(f"{e}; continue with trainer.resume=auto", file=sys.stderr)
            return PREEMPTED
        except UerError:
            if main_rank:
                raise
            return 2  # every rank raises the same error; rank 0 prints it
        return 0

    return run_command(job, argv)


if __name__ == "__main__":
    sys.exit(main())
