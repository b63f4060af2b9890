"""Fine-tune extractive question answering (SQuAD-style JSON) and answer the test questions.

    python examples/qa/train.py trainer.init_from=<uer checkpoint or HF dir> [key=value ...]
    python examples/qa/train.py +model=bert_mini task.tokenizer=vocab.txt   # random init
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `examples.*`

from examples.finetune import main
from examples.qa import task

if __name__ == "__main__":
    sys.exit(main(task, __file__, sys.argv[1:]))
