"""``uer-soup DST SRC SRC [SRC ...]``: average the weights of several uer checkpoints of one model
config into a new checkpoint (a uniform "model soup", Wortsman et al. 2022)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from uer.cli.common import run_command


def soup(sources: list[str | Path], dst: str | Path) -> Path:
    """Write to ``dst`` a checkpoint whose weights are the element-wise mean (in float32, stored in
    the first source's dtypes) of the ``sources``' weights, with the first source's config and
    tokenizer and no training state.

    Raises:
        UerError: fewer than two sources, an existing ``dst``, a source that is not a uer checkpoint,
            or sources whose model configs or tensors differ (the message names the first difference).
    """
    from safetensors.torch import load_file, save_file

    from uer.config import resolve
    from uer.convert.files import staged
    from uer.errors import UerError
    from uer.train.checkpoint import load_config
    from uer.train.run import model_differences

    sources = [Path(s) for s in sources]
    if len(sources) < 2:
        raise UerError("a soup needs at least two checkpoints")
    first = resolve(load_config(sources[0]).model)
    for other in sources[1:]:
        diffs = model_differences(first, resolve(load_config(other).model))
        if diffs:
            raise UerError(f"{other} has another model config than {sources[0]} ({'; '.join(diffs[:3])})")
    base = load_file(str(sources[0] / "model.safetensors"))
    total, dtypes = {k: v.double() for k, v in base.items()}, {k: v.dtype for k, v in base.items()}
    for other in sources[1:]:
        weights = load_file(str(other / "model.safetensors"))
        if weights.keys() != total.keys():
            raise UerError(f"{other}: its tensors differ from {sources[0]}'s "
                           f"({sorted(weights.keys() ^ total.keys())[:3]})")
        for k, v in weights.items():
            total[k] += v.double()
    with staged(Path(dst)) as out:
        out.mkdir()
        save_file({k: (v / len(sources)).to(dtypes[k]).contiguous() for k, v in total.items()},
                  str(out / "model.safetensors"), metadata={"format": "pt"})
        for name in ("config.yaml", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (sources[0] / name).is_file():
                (out / name).write_bytes((sources[0] / name).read_bytes())
    return Path(dst)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv

    def job(args):
        p = argparse.ArgumentParser(prog="uer-soup", description=__doc__.split("\n\n")[0])
        p.add_argument("dst", help="the checkpoint directory to create (must not exist)")
        p.add_argument("sources", nargs="+", help="uer checkpoints with the same model config")
        options = p.parse_args(args)
        soup(options.sources, options.dst)
        print(f"averaged {len(options.sources)} checkpoints into {options.dst}")
        return 0

    return run_command(job, argv)


if __name__ == "__main__":
    sys.exit(main())
