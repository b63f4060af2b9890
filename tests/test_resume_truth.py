"""Issue 14, class 8 — resume tells the truth: the optimizer and schedule settings of the config being
resumed are the ones trained with (or a changed optimizer is refused with one line), the counters
``samples_seen``/``tokens_seen`` continue exactly, and ``metrics.jsonl`` holds no step twice after a
run that logged past its last checkpoint and was killed."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from checks import digest, one_line_error
from omegaconf import OmegaConf
from runs import run_args

from uer.cli.pretrain import main as pretrain_main
from uer.config import compose_config
from uer.train.metrics import batch_size_of
from uer.train.run import prepare

STEPS, SAVE, LOG = 4, 3, 2  # checkpoint at 3; log lines at 2 and 4: step 4 is logged past the checkpoint


def args(corpus: Path, out: Path, *extra: str) -> list[str]:
    return run_args("bert_tiny", corpus, out, STEPS, "data.batch_size=4", f"trainer.save_every={SAVE}",
                    f"trainer.log_every={LOG}", *extra)


def counters(checkpoint: Path) -> dict:
    saved = json.loads((checkpoint / "state" / "trainer.json").read_text())
    return {key: saved[key] for key in ("step", "samples_seen", "tokens_seen")}


def records(out: Path) -> list[tuple[int, str]]:
    return [(r["step"], r["split"]) for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())]


@pytest.fixture(scope="module")
def killed(small_corpus, tmp_path_factory) -> Path:
    """A run killed during step 4, after its log line and before its checkpoint: trained in process to
    step 4 (which saves, as a preempted run would), then that checkpoint removed and a cut-off line
    appended, leaving what a SIGKILL there leaves: checkpoint 3 with its training state (kept through
    step 4's save by trainer.keep_state=2), metrics up to step 4."""
    out = tmp_path_factory.mktemp("killed") / "run"
    prepare(compose_config(args(small_corpus, out, "trainer.keep_state=2"))).fit(until=STEPS)
    shutil.rmtree(out / "checkpoints" / f"step_{STEPS:07d}")
    with (out / "metrics.jsonl").open("a") as f:
        f.write('{"step": 5, "split": "tr')
    return out


def copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def seen(loader, steps: int) -> dict:
    """The counters after ``steps`` steps of one batch from ``loader`` (epoch 0, in order): what
    ``trainer.json`` must say (:func:`uer.train.metrics.batch_size_of` defines a real token)."""
    sizes = [batch_size_of(batch) for batch, _ in zip(loader.epoch_batches(0), range(steps))]
    return {"step": steps, "samples_seen": sum(n for n, _ in sizes), "tokens_seen": sum(t for _, t in sizes)}


def test_counters_continue_and_no_step_is_logged_twice(killed, small_corpus, tmp_path):
    out = copy(killed, tmp_path)
    resumed = prepare(compose_config(args(small_corpus, out, "trainer.resume=auto")))
    at_checkpoint = counters(out / "checkpoints" / "step_0000003")
    assert at_checkpoint == seen(resumed.train_loader, SAVE)  # with the step after the last log line
    assert (resumed.step, resumed.samples_seen, resumed.tokens_seen) == tuple(at_checkpoint.values())
    resumed.fit()
    assert counters(out / "checkpoints" / f"step_{STEPS:07d}") == seen(resumed.train_loader, STEPS)
    assert records(out) == [(2, "train"), (4, "train"), (4, "eval")]  # the killed run's step 4 once
    assert not list(out.glob(".tmp-*"))


def cosine(step: int, warmup: int, total: int) -> float:
    """``transformers.get_cosine_schedule_with_warmup``'s factor at ``step``."""
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))))


def test_changed_optimizer_and_schedule_settings_are_applied(killed, small_corpus, tmp_path):
    out = copy(killed, tmp_path)
    lr, total = 3e-4, 8
    changed = [f"optim.lr={lr}", "optim.betas=[0.8,0.99]", "optim.eps=1e-7", "optim.weight_decay=0.05",
               "scheduler.name=cosine", "scheduler.warmup_steps=1", f"trainer.max_steps={total}"]
    resumed = prepare(compose_config(args(small_corpus, out, "trainer.resume=auto", *changed)))
    decay, no_decay = resumed.optimizer.param_groups
    for group in (decay, no_decay):
        assert group["betas"] == (0.8, 0.99) and group["eps"] == 1e-7 and group["initial_lr"] == lr
        assert group["lr"] == pytest.approx(lr * cosine(SAVE, 1, total), rel=1e-12, abs=0)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0

    resumed.fit(until=SAVE + 1)  # logs step 4 and saves it
    logged = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["step"] == SAVE + 1]
    assert len(logged) == 1 and logged[0]["lr"] == pytest.approx(lr * cosine(SAVE + 1, 1, total), rel=1e-12, abs=0)
    written = out / "checkpoints" / f"step_{SAVE + 1:07d}"
    config = OmegaConf.load(written / "config.yaml")
    saved = torch.load(written / "state" / "optimizer.pt", weights_only=True)["param_groups"][0]
    assert config.optim.lr == lr and list(config.optim.betas) == [0.8, 0.99] and config.trainer.max_steps == total
    assert saved["initial_lr"] == lr and saved["betas"] == (0.8, 0.99) and saved["weight_decay"] == 0.05
    assert saved["lr"] == pytest.approx(lr * cosine(SAVE + 1, 1, total), rel=1e-12, abs=0)


def test_another_optimizer_is_refused_and_the_run_left_untouched(killed, small_corpus, tmp_path, capsys):
    """``uer-pretrain`` itself (its ``main``, in process): exit status 2 and one ``error:`` line."""
    out = copy(killed, tmp_path)
    before = digest(out)
    code = pretrain_main([*args(small_corpus, out), "optim=sgd", "trainer.resume=auto"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: ") and "Traceback" not in "\n".join(err), err
    assert "optimizer.pt: written by another optimizer" in err[-1] and "optim.name" in err[-1], err[-1]
    assert digest(out) == before


def test_max_steps_below_the_checkpoint_step_is_refused(killed, small_corpus, tmp_path):
    out = copy(killed, tmp_path)
    before = digest(out)
    one_line_error(lambda: prepare(compose_config(args(small_corpus, out, "trainer.resume=auto",
                                                       "trainer.max_steps=2"))),
                   "trainer.max_steps=2 is below the step 3 of", "step_0000003")
    assert digest(out) == before


def test_mfu_of_the_first_window_after_resume_counts_its_own_steps(killed, small_corpus, tmp_path):
    """Resumed at step 3 with a log line every 2 steps, the first window holds one step (4), the next
    ones two: MFU per sample (FLOPs · steps / samples, the same for every window of equal batches)
    must agree, which it does only if each window's own number of steps is used."""
    out = copy(killed, tmp_path)
    prepare(compose_config(args(small_corpus, out, "trainer.resume=auto", "trainer.max_steps=8"))).fit()
    train = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["split"] == "train"]
    per_sample = {r["step"]: r["mfu"] / r["samples_per_s"] for r in train if r["step"] > SAVE}
    assert sorted(per_sample) == [4, 6, 8]
    assert per_sample[4] == pytest.approx(per_sample[6], rel=1e-6) == pytest.approx(per_sample[8], rel=1e-6)
