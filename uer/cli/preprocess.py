"""``uer-preprocess``: corpus -> instances -> Arrow dataset directory, with the training command's keys.

Usage (Hydra overrides, composed from ``conf/preprocess.yaml``)::

    uer-preprocess data=bert data.corpus=corpus.txt data.tokenizer=vocab.txt data.seq_length=128 output=DIR

``data.*`` keys the preprocessor does not use (batch_size, mask_prob, ...) are ignored; a key no
processor knows is an error listing the valid keys. Without ``output`` the dataset goes to the
content-addressed cache (``$UER_CACHE/datasets/<hash>``) and a second run with the same inputs
returns it at once. Prints the dataset directory, rows and tokens; on bad input prints
``error: <one line>`` to stderr and exits with status 2.
"""

from __future__ import annotations

import logging
import sys

from hydra import compose, initialize_config_module
from hydra.errors import HydraException, MissingConfigException
from omegaconf.errors import OmegaConfBaseException

from uer.errors import UerError
from uer.preprocess.build import build_dataset, read_meta
from uer.preprocess.registry import options_from_config


def _one_line(error: Exception) -> str:
    text = str(error).split("Config search path")[0]
    return "; ".join(" ".join(line.split()) for line in text.splitlines() if line.strip())


def compose_config(overrides: list[str]):
    """Compose ``conf/preprocess.yaml`` with ``overrides``.

    Plain ``data.<key>=value`` overrides are applied as ``++data.<key>=value`` so that a key the
    data config lacks reaches `options_from_config`, whose error lists the valid keys.
    Raises UerError (one line) for overrides Hydra cannot parse or apply.
    """
    overrides = [f"++{o}" if o.startswith("data.") else o for o in overrides]
    try:
        with initialize_config_module("uer.conf", version_base=None):
            return compose("preprocess", overrides=overrides)
    except MissingConfigException as err:
        raise UerError(f"no config {err.missing_cfg_file}; available: {', '.join(err.options or [])}") from None
    except (HydraException, OmegaConfBaseException) as err:
        raise UerError(_one_line(err)) from None


def main(argv: list[str] | None = None) -> int:
    """Run the command with ``argv`` (default ``sys.argv[1:]``); returns the exit status (0 or 2)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        cfg = compose_config(sys.argv[1:] if argv is None else argv)
        path = build_dataset(options_from_config(cfg.data), output_dir=cfg.output)
    except UerError as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    meta = read_meta(path)
    print(f"dataset: {path}\nrows: {meta['num_rows']}\ntokens: {meta['num_tokens']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
