"""Issue 14, class 7 (faults while writing): a disk that fills up during a save (a real, small tmpfs)
stops ``uer-pretrain`` (and ``uer-soup``) with exit status 2 and one line naming the checkpoint and
``ENOSPC``, the previous checkpoint byte for byte as it was and no temporary directory left; a symbolic link inside
``checkpoints/`` is never taken for a checkpoint, followed or deleted by pruning; under
``uer-torchrun`` (torchrun as the README runs it), SIGTERM makes the workers write the checkpoint of
their last step, complete, and the launcher exit 143 with one line."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from checks import digest
from faults import pretrain
from runs import run_args

from uer.cli.soup import main as soup_main
from uer.train.checkpoint import list_checkpoints, prune_checkpoints
from uer.train.trainer import Trainer

LEGACY_BERT = Path(__file__).parent / "fixtures" / "legacy" / "bert"
LEFT = 64 * 1024
"""Bytes left free on the small filesystem after the first checkpoint: less than a second one needs."""


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB tmpfs mounted on a fresh directory (unmounted afterwards); skipped where mounting is
    not permitted (not root, or no mount in the container)."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mountpoint)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(disk: Path) -> None:
    """Take all but :data:`LEFT` bytes of ``disk``'s free space."""
    stats = os.statvfs(disk)
    with open(disk / "filler", "wb") as f:
        os.posix_fallocate(f.fileno(), 0, stats.f_bavail * stats.f_frsize - LEFT)


def test_disk_full_during_a_save_keeps_the_previous_checkpoint(small_corpus, small_disk, monkeypatch, capsys):
    out, kept = small_disk / "run", {}
    next_step = Trainer.next_step

    def fill_the_disk(self, batches, sums):  # after checkpoint 1: leave too little room for checkpoint 2
        if self.step == 1 and not kept:
            kept.update(digest(out / "checkpoints" / "step_0000001"))
            fill(small_disk)
        return next_step(self, batches, sums)

    monkeypatch.setattr(Trainer, "next_step", fill_the_disk)
    args = run_args("bert_tiny", small_corpus, out, 2, "data.batch_size=4", "trainer.save_every=1")
    code, errors = pretrain(capsys, args)
    assert code == 2 and len(errors) == 1, errors
    assert errors[0] == (f"error: checkpoint {out / 'checkpoints' / 'step_0000002'}: write failed "
                         "(ENOSPC: No space left on device)")
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_0000001"]  # no .tmp-*, no .old-*
    assert digest(out / "checkpoints" / "step_0000001") == kept


def test_disk_full_during_a_soup_leaves_nothing(small_disk, capsys):
    fill(small_disk)  # the averaged weights (570 kB) do not fit
    code = soup_main([str(small_disk / "soup"), str(LEGACY_BERT), str(LEGACY_BERT)])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and errors == [f"error: {small_disk / 'soup'}: write failed (ENOSPC: No space left on device)"]
    assert [p.name for p in small_disk.iterdir()] == ["filler"]  # no soup, no staging directory


def test_links_in_checkpoints_are_never_followed_nor_pruned(tmp_path):
    important = tmp_path / "important"
    (important / "state").mkdir(parents=True)
    (important / "model.safetensors").write_bytes(b"precious")
    (important / "state" / "trainer.json").write_text("{}")
    before = digest(important)
    root = tmp_path / "run" / "checkpoints"
    for step in (3, 4, 5):
        (root / f"step_{step:07d}").mkdir(parents=True)
    (root / "step_0000001").symlink_to(important, target_is_directory=True)  # older than every checkpoint
    (root / "step_0000009").symlink_to(important, target_is_directory=True)  # newer: never resumed from
    (root / "step_0000004" / "link").symlink_to(important, target_is_directory=True)  # inside a pruned one
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step_0000003", "step_0000004", "step_0000005"]
    prune_checkpoints(tmp_path / "run", keep_last=1)
    assert sorted(p.name for p in root.iterdir()) == ["step_0000001", "step_0000005", "step_0000009"]
    assert (root / "step_0000001").is_symlink() and (root / "step_0000009").is_symlink()
    assert digest(important) == before


def torchrun(*cli_args: str) -> subprocess.Popen:
    """``uer-torchrun --standalone --nproc_per_node=2 -m uer.cli.pretrain <cli_args>``, started (the
    session's dataset cache, see conftest)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-m", "uer.cli.launch", "--standalone", "--nproc_per_node=2",
                             "-m", "uer.cli.pretrain", *cli_args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sigterm_under_torchrun_saves_the_last_step(small_corpus, tmp_path):
    out = tmp_path / "run"
    proc = torchrun(*run_args("bert_tiny", small_corpus, out, 1000, "data.batch_size=4", "trainer.log_every=1",
                              "trainer.save_every=0"))
    deadline = time.monotonic() + 180
    while not ((out / "metrics.jsonl").is_file() and len((out / "metrics.jsonl").read_text().splitlines()) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # to torchrun only, as `kill <pid>` or a scheduler's first notice does
    _, err = proc.communicate(timeout=120)
    assert "stopped by SIGTERM after step " in err, err[-3000:]
    step = int(err.split("stopped by SIGTERM after step ")[1].split(";")[0])
    (last,) = list_checkpoints(out)
    assert last.name == f"step_{step:07d}"
    assert {p.name for p in (last / "state").iterdir()} >= {"rng.pt", "rng_1.pt", "optimizer.pt", "trainer.json"}
    assert torch.load(last / "state" / "rng_1.pt", weights_only=True)  # rank 1 wrote its share, complete
    # torchrun's agent turns SIGTERM into its own SignalException once the workers (exit 143) are done;
    # uer-torchrun turns that into the run's status and one line instead of a traceback
    assert proc.returncode == 143 and "uer-torchrun: stopped by SIGTERM" in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
