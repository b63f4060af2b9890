"""The training state (optimizer, schedule, RNG) is kept only where resuming needs it: the newest
``trainer.keep_state`` resumable checkpoints; older ones become weights-only once a newer one is
published, and the newest resumable checkpoint never loses its state."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_callbacks import ROWS, Rows, classifier, collate

from uer.config import resolve
from uer.errors import UerError
from uer.train.assemble import Data, Settings, build_trainer
from uer.train.checkpoint import DROPPED_STATE, drop_state, is_resumable, list_checkpoints, prune_checkpoints
from uer.train.config import OptimConfig, SchedulerConfig, TrainerConfig, check_trainer
from uer.train.run import resume_point


def fake_checkpoint(out: Path, step: int, state: bool = True) -> Path:
    path = out / "checkpoints" / f"step_{step:07d}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    if state:
        (path / "state").mkdir()
        (path / "state" / "optimizer.pt").write_bytes(b"x" * 100)
        (path / "state" / "trainer.json").write_text("{}")
    return path


def kinds(out: Path) -> list[tuple[str, bool]]:
    """(name, resumable) of every checkpoint, oldest first; each still holds its weights."""
    assert all((p / "model.safetensors").is_file() for p in list_checkpoints(out))
    return [(p.name[-2:], is_resumable(p)) for p in list_checkpoints(out)]


def test_older_checkpoints_become_weights_only_and_the_newest_keeps_its_state(tmp_path):
    for step in (2, 4, 6):
        fake_checkpoint(tmp_path, step)
    prune_checkpoints(tmp_path, keep_last=2, keep_state=1)
    assert kinds(tmp_path) == [("04", False), ("06", True)]
    assert not (list_checkpoints(tmp_path)[0] / "state").exists()
    fake_checkpoint(tmp_path, 8)
    prune_checkpoints(tmp_path, keep_last=3, keep_state=2)
    assert kinds(tmp_path) == [("04", False), ("06", True), ("08", True)]


def test_the_only_resumable_checkpoint_keeps_its_state_whatever_keep_state_says(tmp_path):
    fake_checkpoint(tmp_path, 2)
    fake_checkpoint(tmp_path, 4, state=False)  # a weights-only save (trainer.keep_state=0)
    prune_checkpoints(tmp_path, keep_last=2, keep_state=0)
    assert kinds(tmp_path) == [("02", True), ("04", False)]


def test_a_drop_interrupted_after_the_rename_is_finished_by_the_next_one(tmp_path):
    path = fake_checkpoint(tmp_path, 2)
    (path / "state").rename(path / DROPPED_STATE)  # SIGKILL between the rename and the delete
    drop_state(path)
    assert sorted(p.name for p in path.iterdir()) == ["model.safetensors"]


def run(out: Path, steps: int, save_every: int, keep_state: int, resume: bool = False):
    cfg_trainer = TrainerConfig(max_steps=steps, output_dir=str(out), save_every=save_every, keep_state=keep_state,
                                eval_every=0, log_every=1, device="cpu", progress=False, peak_tflops=1.0)
    model, cfg = classifier()
    trainer = build_trainer(model, Settings(cfg_trainer, OptimConfig(lr=1e-2), SchedulerConfig(name="constant")),
                            cfg, None, Data(Rows(), torch.arange(ROWS).numpy(), collate, 8),
                            resume_from=list_checkpoints(out)[-1] if resume else None)
    trainer.fit()
    return trainer


def test_a_run_keeps_state_in_its_last_checkpoint_only_and_resumes_from_it(tmp_path):
    run(tmp_path, steps=4, save_every=2, keep_state=1)
    assert kinds(tmp_path) == [("02", False), ("04", True)]
    assert run(tmp_path, steps=6, save_every=2, keep_state=1, resume=True).step == 6
    assert kinds(tmp_path) == [("04", False), ("06", True)]
    drop_state(list_checkpoints(tmp_path)[-1])  # now every checkpoint is weights-only
    with pytest.raises(UerError, match="no checkpoint in .* holds training state .* trainer.init_from="):
        resume_point(TrainerConfig(output_dir=str(tmp_path), resume="auto"), resolve(classifier()[1].model))
    drop_state(list_checkpoints(tmp_path)[-1])  # now every checkpoint is weights-only
    with pytest.raises(UerError, match="no checkpoint in .* holds training state .* trainer.init_from="):
        resume_point(TrainerConfig(output_dir=str(tmp_path), resume="auto"), resolve(classifier()[1].model))


def test_fine_tuning_without_saves_writes_no_optimizer_state(tmp_path):
    run(tmp_path, steps=2, save_every=0, keep_state=0)  # the recipes' setting (examples/*/config.yaml)
    (checkpoint,) = list_checkpoints(tmp_path)
    assert (checkpoint / "model.safetensors").is_file() and not (checkpoint / "state").exists()


def test_keep_state_must_not_be_negative():
    with pytest.raises(UerError, match="trainer.keep_state must be >= 0"):
        check_trainer(TrainerConfig(keep_state=-1))
