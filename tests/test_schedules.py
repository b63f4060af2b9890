"""uer's learning-rate schedules equal ``transformers.get_scheduler``'s at every step (uer writes
them itself so a run does not import ``peft`` through ``transformers.optimization``)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from transformers import get_scheduler

from uer.errors import UerError
from uer.train.config import SchedulerConfig
from uer.train.optim import build_scheduler
from uer.train.schedules import SCHEDULES

THEIRS = {"constant": "constant_with_warmup"}


def lrs(scheduler, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("warmup,total", [(7, 40), (0, 23), (5, 5)])
def test_every_step_equals_transformers(name, warmup, total):
    if name == "polynomial" and warmup == total:
        pytest.skip("transformers' polynomial divides by zero without decay steps (uer's stays at 1)")
    def optimizer():
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=3e-4)

    ours = build_scheduler(optimizer(), SchedulerConfig(name=name, warmup_steps=warmup), total)
    theirs = get_scheduler(THEIRS.get(name, name), optimizer(), num_warmup_steps=warmup, num_training_steps=total)
    torch.testing.assert_close(lrs(ours, total + 6), lrs(theirs, total + 6), rtol=1e-12, atol=1e-15)


def test_bad_schedules_are_one_line_errors():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=1e-8)
    with pytest.raises(UerError, match="scheduler.name=cosin; choose one of .*cosine"):
        build_scheduler(optimizer, SchedulerConfig(name="cosin", warmup_steps=1), 10)
    with pytest.raises(UerError, match="polynomial decays to 1e-07: optim.lr=1e-08 must be larger"):
        build_scheduler(optimizer, SchedulerConfig(name="polynomial", warmup_steps=1), 10)


@pytest.mark.slow  # a fresh interpreter (~2 s)
def test_training_imports_no_peft():
    code = "import sys, uer.train.run; print('peft' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
