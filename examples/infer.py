"""Predict with a fine-tuned checkpoint, in batches, with a progress bar.

    python examples/infer.py <run>/best input.tsv predictions.tsv [--batch-size 64]

The task (classification, tagging, qa), its labels and sequence settings come from the
checkpoint's config.yaml; the input has the format of the task's test_nolabel file.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `examples.*`

from examples.finetune import load_task_checkpoint  # after the path above
from uer.cli.common import run_command
from uer.errors import UerError
from uer.train.config import check_device
from uer.train.trainer import pick_device

TASKS = ("classification", "tagging", "qa")


def main(argv: list[str]) -> int:
    """Parse ``argv``, load the checkpoint (:func:`examples.finetune.load_task_checkpoint`, the one
    loader), predict ``input`` into ``output``."""
    p = argparse.ArgumentParser(prog="examples/infer.py", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a checkpoint written by a recipe (e.g. <output_dir>/best)")
    p.add_argument("input", help="the file to predict (TSV with a header, or SQuAD-style JSON for qa)")
    p.add_argument("output", help="where the predictions go")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = p.parse_args(argv)
    check_device(args.device, "--device")
    if args.batch_size < 1:
        raise UerError(f"--batch-size={args.batch_size}: must be >= 1")
    model, cfg, tokenizer = load_task_checkpoint(args.checkpoint)
    if cfg.task.get("name") not in TASKS:
        raise UerError(f"{args.checkpoint}: unknown task {cfg.task.get('name')!r}; known: {', '.join(TASKS)}")
    task = importlib.import_module(f"examples.{cfg.task.name}.task")
    task.infer(model.to(pick_device(args.device)), cfg, tokenizer, args.input, args.output, args.batch_size)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, sys.argv[1:]))
