"""Zero-shot classification and image <-> text retrieval of any CLIP checkpoint (uer or a Hugging
Face ``CLIPModel`` directory) on held-out image-caption pairs.

    python examples/zero_shot.py <checkpoint> [--corpus pairs.tsv] [--samples 256] [--seed 0]

The pairs are read as ``uer-pretrain`` reads them (``data=image_text``: a TSV/JSONL of
``image_path<TAB>caption``, a folder of images with ``.txt`` captions, or by default scikit-learn's
digits with templated captions), captions tokenized with the checkpoint's tokenizer and images sized
for its vision tower. The held-out rows are those pretraining holds out with the same
``--samples``/``--seed`` (``data.eval_samples``/``data.seed``), so the figures of a uer run can be
recomputed from its checkpoint. Prints ``i2t_r@1``, ``i2t_r@5``, ``t2i_r@1``, ``t2i_r@5`` and, when
the rows carry class labels (the digits), ``zero_shot_acc``: one ``name value`` line each
(:func:`uer.train.contrastive_eval.evaluate_contrastive` defines them).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, as the other recipes

from omegaconf import open_dict

from uer.cli.common import run_command
from uer.config import compose_config, resolve
from uer.convert import load_pretrained
from uer.data.collators import make_collator
from uer.data.loader import check_loader_options, split_indices
from uer.errors import UerError
from uer.train.assemble import Data
from uer.train.config import check_device
from uer.train.contrastive_eval import clr_part, evaluate_contrastive
from uer.train.run import load_data
from uer.train.trainer import pick_device


def main(argv: list[str]) -> int:
    """Parse ``argv``, load the checkpoint and its held-out pairs, print the metrics."""
    p = argparse.ArgumentParser(prog="examples/zero_shot.py", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a uer CLIP checkpoint or a Hugging Face CLIPModel directory")
    p.add_argument("--corpus", default=None, help="image-caption pairs (default: the captioned digits)")
    p.add_argument("--samples", type=int, default=256, help="held-out pairs (data.eval_samples of pretraining)")
    p.add_argument("--seed", type=int, default=0, help="the split's seed (data.seed of pretraining)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = p.parse_args(argv)
    check_device(args.device, "--device")
    if args.samples < 1:
        raise UerError(f"--samples={args.samples}: must be >= 1")
    model, config, tokenizer = load_pretrained(args.checkpoint)
    clr_part(model)  # not a CLIP model: one line before any data is read
    cfg = compose_config(["data=image_text", f"data.seed={args.seed}", f"data.eval_samples={args.samples}",
                          f"data.batch_size={args.batch_size}", "data.evaluator=null"], need_model=False)
    with open_dict(cfg):
        cfg.model = config.model  # the data's image size follows the checkpoint's vision tower
        cfg.data.corpus = args.corpus
    data_cfg = resolve(cfg).data
    check_loader_options(data_cfg)
    dataset, _, tokenizer = load_data(data_cfg, tokenizer)
    _, held_out = split_indices(len(dataset), args.samples, args.seed)
    device = pick_device(args.device)
    metrics = evaluate_contrastive(model.to(device), Data(dataset, held_out, make_collator(data_cfg, tokenizer),
                                                          args.batch_size), tokenizer, device)
    print(f"held-out pairs {len(held_out)}")
    for name, value in metrics.items():
        print(f"{name} {value:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, sys.argv[1:]))
