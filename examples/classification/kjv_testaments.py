"""An English sentence-classification set that needs no download: King James Bible verses (the corpus
shipped with uer) labeled by testament, ``old`` or ``new``.

    python examples/classification/kjv_testaments.py data/kjv_testaments [--per-class 4000]

writes ``train.tsv``, ``dev.tsv``, ``test.tsv`` (``label<TAB>text_a`` with a header, the format of the
classification recipe) with the same number of verses from each testament, split 80/10/10 at random
(seeded). The New Testament begins at Matthew 1:1, "The book of the generation of Jesus Christ".
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

from uer.data.default import __file__ as _default_dir

KJV = Path(_default_dir).with_name("kjv.txt")
NEW_TESTAMENT_START = "The book of the generation of Jesus Christ"


def testament_verses(path: Path = KJV) -> tuple[list[str], list[str]]:
    """``(old, new)`` verse lists of the shipped KJV text (one verse per line, blank lines between books).

    Raises:
        ValueError: the text has no line where the New Testament starts.
    """
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    starts = [i for i, line in enumerate(lines) if line.startswith(NEW_TESTAMENT_START)]
    if not starts:
        raise ValueError(f"{path}: no line starts with {NEW_TESTAMENT_START!r}")
    old = [line for line in lines[:starts[0]] if line]
    new = [line for line in lines[starts[0]:] if line]
    return old, new


def build(out_dir: Path, per_class: int, seed: int = 0) -> dict[str, int]:
    """Write the three TSV files; returns rows per split."""
    old, new = testament_verses()
    rng = random.Random(seed)
    per_class = min(per_class, len(old), len(new))
    rows = [("old", v) for v in rng.sample(old, per_class)] + [("new", v) for v in rng.sample(new, per_class)]
    rng.shuffle(rows)
    n_dev = n_test = len(rows) // 10
    splits = {"dev": rows[:n_dev], "test": rows[n_dev:n_dev + n_test], "train": rows[n_dev + n_test:]}
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, split in splits.items():
        text = "label\ttext_a\n" + "".join(f"{label}\t{verse}\n" for label, verse in split)
        (out_dir / f"{name}.tsv").write_text(text, encoding="utf-8")
    return {name: len(split) for name, split in splits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--per-class", type=int, default=4000, help="verses per testament (default 4000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(build(args.out_dir, args.per_class, args.seed))


if __name__ == "__main__":
    main()
