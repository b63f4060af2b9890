"""Issue 14, class 1 — training state is never trusted blindly: every file of a checkpoint's ``state/``
(optimizer.pt, scheduler.pt, rng.pt, trainer.json, the DCP metadata of a sharded one) is checked
against the run being resumed before anything is loaded. Each case doctors a real checkpoint's file
(content that still loads with ``weights_only=True``, or a truncated/missing file) and asserts the one
line naming the file and what is wrong, a trainer left as it was, and the checkpoint untouched."""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from checks import digest, one_line_error
from runs import run_args

from uer.cli.pretrain import main as pretrain_main
from uer.config import compose_config
from uer.train.run import prepare, pretrain
from uer.train.state_check import check_counters

STEP = "step_0000002"


def args(corpus: Path, out: Path, *extra: str) -> list[str]:
    return run_args("bert_tiny", corpus, out, 2, "data.batch_size=4", "trainer.save_every=2", *extra)


@pytest.fixture(scope="module")
def run(small_corpus, tmp_path_factory) -> Path:
    """A finished 2-step run (one checkpoint, ``step_0000002``)."""
    out = tmp_path_factory.mktemp("state") / "run"
    pretrain(compose_config(args(small_corpus, out)))
    return out


@pytest.fixture(scope="module")
def fresh(run, small_corpus, tmp_path_factory):
    """A new trainer of the same run (nothing loaded) and a copy of its initial weights."""
    trainer = prepare(compose_config(args(small_corpus, tmp_path_factory.mktemp("fresh") / "out")))
    return trainer, {k: v.clone() for k, v in trainer.model.state_dict().items()}


def doctored(run: Path, tmp_path: Path, name: str, write) -> Path:
    """A copy of the run's checkpoint (hard links: nothing copied) whose ``state/<name>`` is replaced
    by what ``write(original path, new path)`` writes; the new checkpoint dir."""
    source, copy = run / "checkpoints" / STEP, tmp_path / STEP
    shutil.copytree(source, copy, copy_function=os.link)
    (copy / "state" / name).unlink()  # never write through the link into the real run
    write(source / "state" / name, copy / "state" / name)
    return copy


def torch_edit(change, replace: bool = False):
    """A ``write`` for :func:`doctored`: load the torch file, ``change`` it in place (or, with
    ``replace``, write what ``change`` returns instead), save."""
    def write(original: Path, new: Path) -> None:
        content = torch.load(original, weights_only=True)
        replaced = change(content)
        torch.save(replaced if replace else content, new)
    return write


def json_edit(change, replace: bool = False):
    """A ``write`` for :func:`doctored` of ``trainer.json``, as :func:`torch_edit`."""
    def write(original: Path, new: Path) -> None:
        content = json.loads(original.read_text())
        replaced = change(content)
        new.write_text(json.dumps(replaced if replace else content))
    return write


def stats(root: Path) -> dict[str, tuple[int, int, int]]:
    """(inode, size, mtime) of every file under ``root``: nothing written or replaced (cheaper than a digest)."""
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def truncated(original: Path, new: Path) -> None:
    new.write_bytes(original.read_bytes()[: original.stat().st_size // 2])


def adam(change):
    """Change the state of parameter 0 (``embedding.word.weight``, 8000 x 128 in bert_tiny)."""
    return torch_edit(lambda o: change(o["state"][0]))


CASES = {
    "exp_avg transposed (fused AdamW corrupted memory)": (
        "optimizer.pt", adam(lambda s: s.update(exp_avg=s["exp_avg"].t().contiguous())),
        "state of parameter 0 (embedding.word.weight) has exp_avg of shape (128, 8000), the parameter is (8000, 128)"),
    "exp_avg_sq of integers": ("optimizer.pt", adam(lambda s: s.update(exp_avg_sq=s["exp_avg_sq"].long())),
                               "has exp_avg_sq of dtype torch.int64, the parameter is torch.float32"),
    "negative step": ("optimizer.pt", adam(lambda s: s.update(step=torch.tensor(-1.0))), "a finite scalar >= 0"),
    "no exp_avg_sq": ("optimizer.pt", adam(lambda s: s.pop("exp_avg_sq")), "has no ['exp_avg_sq']"),
    "a foreign state key": ("optimizer.pt", adam(lambda s: s.update(momentum_buffer=s["exp_avg"])),
                            "unknown keys ['momentum_buffer']"),
    "parameter state not a dict": ("optimizer.pt", torch_edit(lambda o: o["state"].update({0: torch.zeros(3)})),
                                   "state of parameter 0 (embedding.word.weight) is a torch.float32 tensor"),
    "a parameter group missing": ("optimizer.pt", torch_edit(lambda o: o["param_groups"].pop()),
                                  "has 1 parameter groups, the optimizer has 2"),
    "a parameter missing": ("optimizer.pt", torch_edit(lambda o: o["param_groups"][1]["params"].pop()),
                            "parameter group 1 has 23 parameters, the optimizer's has 24"),
    "a parameter listed twice": ("optimizer.pt", torch_edit(lambda o: o["param_groups"][1]["params"].__setitem__(0, 0)),
                                 "lists parameter id 0 twice"),
    "state of an unknown parameter": ("optimizer.pt", torch_edit(lambda o: o["state"].update({999: o["state"][0]})),
                                      "holds state of parameter 999, which no parameter group lists"),
    "not an optimizer state": ("optimizer.pt", torch_edit(lambda o: [1, 2], replace=True),
                               "optimizer.pt: is a list, expected a dict of state and param_groups"),
    "optimizer.pt truncated": ("optimizer.pt", truncated, "optimizer.pt: not readable"),
    "last_epoch as a string": ("scheduler.pt", torch_edit(lambda s: s.update(last_epoch="2")),
                               "scheduler.pt: last_epoch is '2' (str), expected an int"),
    "last_epoch off the step": ("scheduler.pt", torch_edit(lambda s: s.update(last_epoch=7)),
                                "scheduler.pt: last_epoch is 7, but trainer.json says step 2"),
    "base_lrs of 3 groups": ("scheduler.pt", torch_edit(lambda s: s["base_lrs"].append(1e-4)),
                             "base_lrs is a list, expected a list of 2"),
    "a NaN base lr": ("scheduler.pt", torch_edit(lambda s: s["base_lrs"].__setitem__(0, math.nan)),
                      "base_lrs[0] is nan (float), expected a finite number"),
    "a key that would replace an attribute": ("scheduler.pt", torch_edit(lambda s: s.update(optimizer=None)),
                                              "scheduler.pt: the content has unknown keys ['optimizer']"),
    "RNG state of the wrong length": ("rng.pt", torch_edit(lambda r: r.update(torch=r["torch"][:10])),
                                      "rng.pt: torch is a torch.uint8 tensor of shape (10,), expected a torch.uint8"),
    "RNG state not a dict": ("rng.pt", torch_edit(lambda r: r["torch"], replace=True), "rng.pt: the content is a torch.uint8 tensor"),
    "CUDA RNG state of floats": ("rng.pt", torch_edit(lambda r: r.update(cuda=torch.zeros(1, 16))),
                                 "rng.pt: cuda is a torch.float32 tensor of shape (1, 16)"),
    "rng.pt missing": ("rng.pt", lambda original, new: None, "rng.pt: missing"),
    "step as a string in JSON": ("trainer.json", json_edit(lambda t: t.update(step="2")),
                                 "trainer.json: step is '2' (str), expected an int >= 0"),
    "negative samples seen": ("trainer.json", json_edit(lambda t: t.update(samples_seen=-5)),
                              "trainer.json: samples_seen is -5 (int), expected an int >= 0"),
    "skipped steps as a bool": ("trainer.json", json_edit(lambda t: t.update(skipped_steps=True)),
                                "skipped_steps is True (bool)"),
    "step of another checkpoint": ("trainer.json", json_edit(lambda t: t.update(step=5)),
                                   "step is 5, but the checkpoint is that of step 2"),
    "no data position": ("trainer.json", json_edit(lambda t: t.pop("data")), "trainer.json: has no ['data']"),
    "data position as a string": ("trainer.json", json_edit(lambda t: t["data"].update(position="x")),
                                  "trainer.json: data.position is 'x' (str), expected an int"),
    "data position past the epoch": ("trainer.json", json_edit(lambda t: t["data"].update(position=10**9)),
                                     "is out of range"),
    "a JSON list": ("trainer.json", json_edit(lambda t: [t], replace=True), "trainer.json: the content is a list, expected a dict"),
    "a NaN step": ("trainer.json", json_edit(lambda t: t.update(step=math.nan)), "step is nan (float)"),
    "trainer.json truncated": ("trainer.json", truncated, "trainer.json: not readable"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_doctored_state_file_is_refused_before_anything_is_loaded(case, run, fresh, tmp_path):
    name, write, needle = CASES[case]
    trainer, initial = fresh
    broken = doctored(run, tmp_path, name, write)
    before = stats(broken)
    one_line_error(lambda: trainer.resume(broken), f"{broken / 'state' / name}: ", needle)
    assert trainer.step == 0 and trainer.samples_seen == 0 and not trainer.optimizer.state
    assert trainer.scheduler.last_epoch == 0 and trainer.train_loader.position == 0
    assert all(torch.equal(value, initial[key]) for key, value in trainer.model.state_dict().items())
    assert stats(broken) == before


def test_uer_pretrain_exits_2_and_leaves_the_run_untouched(run, small_corpus, tmp_path, capsys):
    """``uer-pretrain trainer.resume=auto`` (its ``main``, in process) on a run whose optimizer state
    has a transposed moment: the case that aborted the process inside the fused AdamW step."""
    out = Path(shutil.copytree(run, tmp_path / "run"))
    state = out / "checkpoints" / STEP / "state" / "optimizer.pt"
    adam(lambda s: s.update(exp_avg=s["exp_avg"].t().contiguous()))(state, state)
    before = digest(out)
    code = pretrain_main([*args(small_corpus, out, "trainer.max_steps=4"), "trainer.resume=auto"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: ") and "Traceback" not in "\n".join(err), err
    assert f"{state}: state of parameter 0 (embedding.word.weight) has exp_avg of shape (128, 8000)" in err[-1]
    assert digest(out) == before


def test_loss_scaler_state_of_the_wrong_form(run, fresh):
    """fp16 runs save their ``torch.amp.GradScaler`` state in trainer.json (checked against the run's scaler)."""
    trainer, _ = fresh
    path = run / "checkpoints" / STEP / "state" / "trainer.json"
    saved = json.loads(path.read_text())
    fp16 = SimpleNamespace(train_loader=trainer.train_loader, scaler=torch.amp.GradScaler("cpu"))
    good = fp16.scaler.state_dict()
    check_counters(path, {**saved, "scaler": good}, fp16, 2)
    one_line_error(lambda: check_counters(path, {**saved, "scaler": {**good, "scale": "x"}}, fp16, 2),
                   f"{path}: scaler.scale is 'x' (str), expected a finite number")
    one_line_error(lambda: check_counters(path, {**saved, "scaler": {**good, "scale": -1.0}}, fp16, 2),
                   "scaler.scale is -1.0, expected > 0")


def sharded_copy(run: Path, small_corpus: Path, tmp_path: Path, model_change=None) -> tuple[Path, object]:
    """The run's checkpoint with its model and optimizer state in ``state/dcp`` (as FSDP2 writes it,
    saved here in one process) instead of ``optimizer.pt``; ``model_change(model state)`` doctors the
    shards. Returns the checkpoint and a new trainer of the run."""
    import torch.distributed.checkpoint as dcp  # lazy: slow to import, and only this slow test uses it
    from torch.distributed.checkpoint.state_dict import get_state_dict  # lazy: as dcp above

    source = prepare(compose_config(args(small_corpus, tmp_path / "a", f"trainer.resume={run / 'checkpoints' / STEP}")))
    model_sd, optim_sd = get_state_dict(source.model, source.optimizer)
    if model_change:
        model_change(model_sd)
    copy = Path(shutil.copytree(run / "checkpoints" / STEP, tmp_path / STEP))
    (copy / "state" / "optimizer.pt").unlink()
    dcp.save({"model": model_sd, "optimizer": optim_sd}, checkpoint_id=str(copy / "state" / "dcp"))
    return copy, prepare(compose_config(args(small_corpus, tmp_path / "b")))


@pytest.mark.slow
def test_sharded_state_metadata_is_checked(run, small_corpus, tmp_path):
    good, trainer = sharded_copy(run, small_corpus, tmp_path / "good")
    trainer.resume(good)  # a sound DCP checkpoint resumes in one process
    assert trainer.step == 2 and trainer.optimizer.state

    def transposed(model_sd):
        model_sd["embedding.word.weight"] = model_sd["embedding.word.weight"].t().contiguous()

    broken, trainer = sharded_copy(run, small_corpus, tmp_path / "shape", transposed)
    metadata = broken / "state" / "dcp" / ".metadata"
    one_line_error(lambda: trainer.resume(broken), f"{metadata}: model embedding.word.weight is torch.float32 "
                   "of shape (128, 8000), the parameter is torch.float32 of shape (8000, 128)")
    truncated(metadata, metadata.with_suffix(".cut"))
    metadata.with_suffix(".cut").replace(metadata)
    one_line_error(lambda: trainer.resume(broken), f"{metadata}: not readable")
    metadata.unlink()
    one_line_error(lambda: trainer.resume(broken), f"{metadata}: missing; the sharded training state is incomplete")
    assert trainer.step == 0 and not trainer.optimizer.state
