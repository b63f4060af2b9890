"""Never lose work: a run killed with SIGKILL mid-checkpoint-write or mid-step, or stopped with
SIGTERM, resumes with ``trainer.resume=auto`` from its last complete checkpoint and ends with the
weights of an uninterrupted run, bit for bit (CPU, fp32, dropout on)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from uer.train.checkpoint import SAVE_DELAY_ENV, list_checkpoints

STEPS = 8


def command(corpus: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "uer.cli.pretrain", "+model=bert_tiny", f"data.corpus={corpus}",
            f"trainer.output_dir={out}", f"trainer.max_steps={STEPS}", "trainer.save_every=2", "trainer.keep_last=8",
            "trainer.log_every=1", "trainer.eval_every=0", "trainer.progress=false", "data.batch_size=4",
            "data.seq_length=32", "data.eval_samples=4", "data.num_proc=1", *extra]


def start(corpus: Path, out: Path, cache: Path, *extra: str, delay: float = 0) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "UER_CACHE": str(cache), "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    if delay:
        env[SAVE_DELAY_ENV] = str(delay)
    return subprocess.Popen(command(corpus, out, *extra), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=180)
    return proc.returncode, err


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Poll ``condition()`` until true; fail if the run ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def logged_steps(out: Path) -> int:
    path = out / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    last = list_checkpoints(out)[-1]
    assert last.name == f"step_{STEPS:07d}"
    return load_file(last / "model.safetensors")


@pytest.fixture(scope="module")
def straight(small_corpus, tmp_path_factory) -> tuple[dict[str, torch.Tensor], Path]:
    """An uninterrupted run (a subprocess too: the same threads, so the same float order)."""
    root = tmp_path_factory.mktemp("straight")
    code, err = finish(start(small_corpus, root / "run", root / "cache"))
    assert code == 0, err[-3000:]
    return final_weights(root / "run"), root / "cache"


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


@pytest.mark.slow  # a real process killed mid-write: ~20 s; the quick suite keeps the in-process write faults
def test_sigkill_mid_checkpoint_write_resumes_from_the_last_complete_one(straight, small_corpus, tmp_path):
    reference, cache = straight
    out = tmp_path / "run"
    proc = start(small_corpus, out, cache, "trainer.save_every=4", delay=60)  # saves at 4 and 8 pause
    partial = out / "checkpoints" / ".tmp-step_0000004" / "state" / "rng.pt"
    wait_for(partial.is_file, proc)  # everything written, the rename not yet done
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list_checkpoints(out) == []  # the partial checkpoint is not taken for a complete one
    code, err = finish(start(small_corpus, out, cache, "trainer.resume=auto", "trainer.save_every=4"))
    assert code == 0 and "no checkpoint" in err, err[-3000:]
    assert_identical(reference, final_weights(out))


@pytest.mark.slow
def test_sigkill_mid_step_and_sigterm_resume_to_the_same_weights(straight, small_corpus, tmp_path):
    reference, cache = straight
    out = tmp_path / "run"
    proc = start(small_corpus, out, cache)
    wait_for(lambda: logged_steps(out) >= 3, proc)
    proc.send_signal(signal.SIGKILL)  # somewhere in step 4 or later
    proc.wait()
    done = list_checkpoints(out)  # the newest keeps the training state (trainer.keep_state=1), all the weights
    assert done and (done[-1] / "state" / "trainer.json").is_file()
    assert all((p / "model.safetensors").is_file() for p in done)

    proc = start(small_corpus, out, cache, "trainer.resume=auto")
    first = logged_steps(out)
    wait_for(lambda: logged_steps(out) > first, proc)
    proc.send_signal(signal.SIGTERM)  # preemption: save the finished step, exit 143
    code, err = finish(proc)
    assert code == 143 and "stopped by SIGTERM after step" in err, err[-3000:]
    step = int(err.split("stopped by SIGTERM after step ")[1].split(";")[0])
    if step < STEPS:
        assert list_checkpoints(out)[-1].name == f"step_{step:07d}"

    code, err = finish(start(small_corpus, out, cache, "trainer.resume=auto"))
    assert code == 0, err[-3000:]
    assert_identical(reference, final_weights(out))
