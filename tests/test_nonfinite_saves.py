"""Issue 14, class 2 (NaN reaches checkpoints): no checkpoint ever holds a non-finite weight. Faults
are injected into real ``uer-pretrain`` runs (its ``main()`` in this process): a NaN written into a
parameter the loss never reads (the loss stays finite), a learning rate that overflows the weights
in one step, a NaN evaluation loss. Each run stops with exit status 2 and one ``error:`` line naming
the step and the last good checkpoint; every checkpoint left holds finite weights, the earlier one
byte for byte as it was written, and no temporary directory remains."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from checks import digest
from faults import pretrain
from runs import run_args
from safetensors.torch import load_file

from uer.train.trainer import Trainer

UNREAD = "embedding.position.weight"
"""Its last row (position 511) is never read by 32-token batches: a NaN there leaves the loss finite."""


def assert_no_bad_checkpoint(out: Path) -> None:
    """Every safetensors file under ``checkpoints/`` is finite, and no staging directory is left."""
    root = out / "checkpoints"
    for path in root.rglob("*.safetensors"):
        assert all(torch.isfinite(v).all() for v in load_file(path).values()), path
    assert not [p.name for p in root.iterdir() if p.name.startswith((".tmp-", ".old-"))]


@pytest.mark.parametrize("policy", ["stop", pytest.param("skip", marks=pytest.mark.slow)])
def test_a_nan_weight_with_a_finite_loss_is_never_saved(policy, small_corpus, tmp_path, monkeypatch, capsys):
    out, kept = tmp_path / "run", {}
    next_step = Trainer.next_step

    def poisoned(self, batches, sums):  # after step 3 is taken: a NaN the loss never sees
        norm = next_step(self, batches, sums)
        if self.step == 2:
            kept.update(digest(out / "checkpoints" / "step_0000002"))
            with torch.no_grad():
                self.model.get_parameter(UNREAD)[-1, 0] = float("nan")
        return norm

    monkeypatch.setattr(Trainer, "next_step", poisoned)
    args = run_args("bert_tiny", small_corpus, out, 3, "data.batch_size=4", "trainer.save_every=2",
                    "trainer.log_every=1", f"trainer.on_nonfinite={policy}",
                    "data.eval_samples=0")  # no final evaluation: the final save meets the NaN
    code, errors = pretrain(capsys, args)
    assert code == 2 and len(errors) == 1, errors
    assert (f"step 3: non-finite weights in {UNREAD} (trainer.on_nonfinite={policy}); not saved; "
            f"last good checkpoint: {out / 'checkpoints' / 'step_0000002'}") in errors[0]
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_0000002"]  # the final save refused
    assert digest(out / "checkpoints" / "step_0000002") == kept
    assert_no_bad_checkpoint(out)
    assert "NaN" not in (out / "metrics.jsonl").read_text()


@pytest.mark.slow
def test_weights_overflowing_in_one_step_leave_no_checkpoint(small_corpus, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"  # loss and gradient norm of step 1 are finite; the update is not
    args = run_args("bert_tiny", small_corpus, out, 1, "data.batch_size=4", "optim.lr=1e38",
                    "scheduler=constant", "scheduler.warmup_steps=0", "data.eval_samples=0")
    code, errors = pretrain(capsys, args)
    assert code == 2 and len(errors) == 1, errors
    assert "step 1: non-finite weights in embedding." in errors[0] and errors[0].endswith("last good checkpoint: none")
    assert not out.exists()  # nothing was written: the run leaves no output dir


def test_a_nan_evaluation_loss_stops_the_run(small_corpus, tmp_path, monkeypatch, capsys):
    out, kept = tmp_path / "run", {}
    evaluate = Trainer.evaluate

    def poisoned(self, run_log=None):  # the held-out loss of step 2 is NaN, the weights finite
        if self.step != 2:
            return evaluate(self, run_log)
        kept.update(digest(out / "checkpoints" / "step_0000001"))
        forward = self.forward

        def nan_loss(batch):
            result = forward(batch)
            for name, (total, count) in list(result.metrics.items()):
                if name.endswith("/loss"):
                    result.metrics[name] = (total * float("nan"), count)
            return result

        self.forward = nan_loss
        try:
            return evaluate(self, run_log)
        finally:
            self.forward = forward

    monkeypatch.setattr(Trainer, "evaluate", poisoned)
    args = run_args("bert_tiny", small_corpus, out, 2, "data.batch_size=4", "trainer.save_every=1",
                    "trainer.eval_every=2")
    code, errors = pretrain(capsys, args)
    assert code == 2 and len(errors) == 1, errors
    assert "step 2: non-finite evaluation loss=nan (trainer.on_nonfinite=stop)" in errors[0]
    assert errors[0].endswith(f"last good checkpoint: {out / 'checkpoints' / 'step_0000001'}")
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_0000001"]
    assert digest(out / "checkpoints" / "step_0000001") == kept
    assert_no_bad_checkpoint(out)
