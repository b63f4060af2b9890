"""``uer-preprocess``: corpus -> instances -> Arrow dataset directory, with the training command's keys.

Usage (Hydra overrides, composed from ``conf/preprocess.yaml``)::

    uer-preprocess data=bert data.corpus=corpus.txt data.tokenizer=vocab.txt data.seq_length=128 output=DIR

``data.processor._target_`` names the processor class; ``data.*`` keys it does not use (batch_size,
mask_prob, ...) are ignored; a key that neither it, the collator nor the loader reads is an error
listing the valid keys. A ``_target_`` outside ``uer.`` needs its prefix in
``trainer.allowed_targets=[prefix.]``. Without ``output`` the dataset goes to the content-addressed
cache (``$UER_CACHE/datasets/<hash>``) and a second run with the same inputs returns it at once;
train from it with ``uer-pretrain ... data.dataset=DIR``. An interrupted run, started again, reuses
the shards it finished. ``--cfg [--package data]`` prints the composed config and exits;
``-h``/``--help`` and ``--cfg`` may stand anywhere on the line. Prints the dataset directory, rows
and tokens (and, if any, how many lines
were skipped as invalid UTF-8 under ``data.invalid_utf8=skip`` or split for being longer than
1 MiB); on bad input prints ``error: <one line>`` to stderr and exits with 2. SIGTERM or Ctrl-C
stops the worker processes, keeps the finished shards for the next run and exits with 143 or 130.
A second run of the same inputs while one is running waits for it and then returns its dataset.
"""

from __future__ import annotations

import sys

from uer.cli.common import print_config, run_command, split_hydra_flags
from uer.config import compose_config


def main(argv: list[str] | None = None) -> int:
    """Run the command with ``argv`` (default ``sys.argv[1:]``); returns the exit status (0 or 2)."""

    def job(args):
        flags, overrides = split_hydra_flags(args)
        if flags.help:
            print(__doc__)
            return 0
        cfg = compose_config(overrides, config_name="preprocess", need_model=False)
        if flags.cfg:
            print_config(cfg, flags)
            return 0
        # lazy, deliberately: torch loads only past --help and --cfg (0.2 s instead of 2-3 s on an idle machine)
        from uer.data.loader import check_loader_options  # lazy
        from uer.models.build import DEFAULT_ALLOWED  # lazy
        from uer.preprocess.build import build_dataset, read_meta  # lazy
        from uer.preprocess.registry import options_from_config  # lazy
        from uer.preprocess.shards import Terminated  # lazy

        check_loader_options(cfg.data)  # data.seed and the rest, as uer-pretrain would refuse them later
        allowed = DEFAULT_ALLOWED + tuple(cfg.trainer.allowed_targets)
        try:
            path = build_dataset(options_from_config(cfg.data, allowed), output_dir=cfg.output)
        except Terminated as stop:
            print("error: stopped by SIGTERM; the same command continues from the finished shards", file=sys.stderr)
            return stop.code
        meta = read_meta(path)
        print(f"dataset: {path}\nrows: {meta['num_rows']}\ntokens: {meta['num_tokens']}")
        source = meta.get("source", {})
        for key, what in (("skipped_invalid_lines", "skipped lines (not UTF-8)"),
                          ("long_lines", "split long lines")):
            if source.get(key):
                print(f"{what}: {source[key]}")
        return 0

    return run_command(job, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
