"""``uer-soup DST SRC SRC [SRC ...]``: average the weights of several checkpoints (uer or Hugging
Face) of one model config into a new checkpoint (a uniform "model soup", Wortsman et al. 2022)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from uer.cli.common import run_command
from uer.config import resolve
from uer.convert import load_pretrained
from uer.convert.files import staged
from uer.errors import UerError
from uer.models.pretrained import model_differences, save_pretrained


def soup(sources: list[str | Path], dst: str | Path) -> Path:
    """Write to ``dst`` a checkpoint whose weights are the element-wise mean (accumulated in float64,
    stored in the first source's dtypes) of the ``sources``' weights, with the first source's config
    and tokenizer and no training state. Sources are read by :func:`uer.convert.load_pretrained`
    (uer checkpoints or Hugging Face directories; only ``uer.`` classes are built).

    Raises:
        UerError: fewer than two sources, an existing ``dst``, a source that is not a checkpoint (or
            a damaged one), a source with a NaN or infinite weight (named with the tensor), or
            sources whose model configs differ (the message names the first difference). Nothing
            is written then.
    """
    sources = [Path(s) for s in sources]
    if len(sources) < 2:
        raise UerError("a soup needs at least two checkpoints")
    model, config, tokenizer = load_pretrained(sources[0], dtype=None)
    first = resolve(config.model)
    total = {k: finite(v, sources[0], k).double() for k, v in model.state_dict().items()}
    for other in sources[1:]:
        loaded = load_pretrained(other, dtype=None)
        diffs = model_differences(first, resolve(loaded.config.model))
        if diffs:
            raise UerError(f"{other} has another model config than {sources[0]} ({'; '.join(diffs[:3])})")
        for k, v in loaded.model.state_dict().items():
            total[k] += finite(v, other, k).double()
    model.load_state_dict({k: v / len(sources) for k, v in total.items()})  # cast to each tensor's dtype
    with staged(Path(dst)) as out:
        save_pretrained(out, model, config, tokenizer)
    return Path(dst)


def finite(tensor: torch.Tensor, source: Path, name: str) -> torch.Tensor:
    """``tensor`` unchanged if every value is finite (non-float tensors always are).

    Raises:
        UerError: a NaN or infinite value, naming the checkpoint ``source`` and the weight ``name``:
            one such value would make that weight of the soup NaN or infinite.
    """
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise UerError(f"{source}: weight {name} holds NaN or infinite values; a soup of it would too")
    return tensor


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv

    def job(args):
        p = argparse.ArgumentParser(prog="uer-soup", description=__doc__.split("\n\n")[0])
        p.add_argument("dst", help="the checkpoint directory to create (must not exist)")
        p.add_argument("sources", nargs="+",
                       help="uer checkpoints or Hugging Face directories with the same model config")
        options = p.parse_args(args)
        soup(options.sources, options.dst)
        print(f"averaged {len(options.sources)} checkpoints into {options.dst}")
        return 0

    return run_command(job, argv)


if __name__ == "__main__":
    sys.exit(main())
