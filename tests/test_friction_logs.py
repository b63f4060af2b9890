"""What a user reads while a job runs (issue 18): the preprocessing bar reaches the last shard, and
an evaluation line shows each figure once."""
from __future__ import annotations

import io
from types import SimpleNamespace

from uer.preprocess import shards

from uer.train.metrics import metrics_line


def test_shard_bar_counts_the_last_shard(tmp_path, monkeypatch):
    bars = []

    class Bar(shards.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, file=io.StringIO(), **kwargs)
            bars.append(self)

    monkeypatch.setattr(shards, "tqdm", Bar)
    monkeypatch.setattr(shards, "write_shard", lambda _processor, shard, _tok, _path: (shard, 2 * shard))
    processor = SimpleNamespace(num_proc=1, name="Test")
    assert shards.run_shards(processor, [1, 2, 3, 4], None, tmp_path) == [(1, 2), (2, 4), (3, 6), (4, 8)]
    assert bars[0].n == bars[0].total == 4


def test_eval_line_shows_each_figure_once():
    single = {"lm/acc": 0.25, "lm/loss": 3.5, "loss": 3.5}
    assert metrics_line(single) == "lm/acc=0.2500 loss=3.5000"
    finetune = {"loss": 0.69, "cls/loss": 0.69, "cls/acc": 0.5, "acc": 0.50000001, "macro_f1": 0.4}
    assert metrics_line(finetune) == "loss=0.6900 acc=0.5000 macro_f1=0.4000"
    two = {"mlm/loss": 9.0, "sp/loss": 0.7, "loss": 9.7}  # a sum of parts: every figure differs
    assert metrics_line(two) == "mlm/loss=9.0000 sp/loss=0.7000 loss=9.7000"
