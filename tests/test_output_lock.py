"""Issue 14, class 4 (the output directory has an owner): a run holds an exclusive lock on its
``trainer.output_dir`` for the whole of ``Trainer.fit``; a second run on it stops with one line and
exit 2 and touches none of the first run's files; a lock left by a SIGKILLed run blocks nothing."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from checks import digest
from test_crash_safety import finish, wait_for

from uer.cli.pretrain import main as pretrain_main
from uer.errors import UerError
from uer.train.checkpoint import SAVE_DELAY_ENV, list_checkpoints
from uer.train.lock import LOCK_FILE, own_output_dir

TINY = ["+model=bert_tiny", "trainer.max_steps=2", "data.batch_size=4", "data.seq_length=32",
        "trainer.progress=false", "data.num_proc=1", "data.eval_samples=4", "trainer.eval_every=0"]
HOLD = """
import sys, time
from pathlib import Path
from uer.preprocess.lock import FileLock
out = Path(sys.argv[1])
out.mkdir()
(out / "metrics.jsonl").write_text('{"step": 1}\\n')
assert FileLock(out / ".lock").acquire()
print("locked", flush=True)
time.sleep(60)
"""


def hold(out: Path) -> subprocess.Popen:
    """Another process that creates ``out``, writes a file there and holds its lock, as a run would."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def second_run(out: Path, corpus: Path, capsys, *extra: str) -> tuple[int, str]:
    """``uer-pretrain`` on ``out`` in this process: (exit status, stderr)."""
    capsys.readouterr()
    code = pretrain_main([*TINY, f"data.corpus={corpus}", f"trainer.output_dir={out}", *extra])
    return code, capsys.readouterr().err


def assert_in_use(code: int, err: str, out: Path, pid: int) -> None:
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert code == 2 and len(lines) == 1, err
    assert lines[0] == (f"error: trainer.output_dir={out} is in use by another run (pid {pid}); "
                        "wait for it to end or choose another trainer.output_dir")


def test_a_second_run_on_a_held_output_dir_stops_and_touches_nothing(tmp_path, small_corpus, capsys):
    out = tmp_path / "run"  # new: the holder made it, as a run started at the same moment would
    holder = hold(out)
    try:
        before = digest(out)
        code, err = second_run(out, small_corpus, capsys)
        assert_in_use(code, err, out, holder.pid)
        assert digest(out) == before and holder.poll() is None  # nothing removed, nothing written
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_run_blocks_nothing(tmp_path):
    out = tmp_path / "run"
    holder = hold(out)
    with pytest.raises(UerError, match=r"is in use by another run \(pid \d+\)"):
        with own_output_dir(out):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (out / LOCK_FILE).is_file()  # the file stays; the flock died with its process
    with own_output_dir(out) as created:
        assert not created and (out / LOCK_FILE).read_text().split() == [str(os.getpid())]
    assert not (out / LOCK_FILE).exists() and (out / "metrics.jsonl").is_file()


@pytest.mark.slow
def test_two_real_runs_on_one_output_dir(tmp_path, small_corpus, capsys, monkeypatch):
    """Run 1 is a real ``uer-pretrain`` process, paused inside its checkpoint write (holding the
    lock); run 2 (in this process) stops with the line; run 1 then finishes as if alone."""
    out, cache = tmp_path / "run", tmp_path / "cache"
    env = {**os.environ, "UER_CACHE": str(cache), "OMP_NUM_THREADS": "1", SAVE_DELAY_ENV: "10"}
    first = subprocess.Popen([sys.executable, "-m", "uer.cli.pretrain", *TINY, f"data.corpus={small_corpus}",
                              f"trainer.output_dir={out}"], env=env, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (out / "checkpoints" / ".tmp-step_0000002").is_dir(), first)
    monkeypatch.setenv("UER_CACHE", str(cache))
    code, err = second_run(out, small_corpus, capsys, "trainer.resume=auto")
    assert first.poll() is None, "run 1 ended before run 2 was refused: raise the delay"
    assert_in_use(code, err, out, first.pid)
    code, err = finish(first)
    assert code == 0, err[-3000:]
    assert [p.name for p in list_checkpoints(out)] == ["step_0000002"] and not (out / LOCK_FILE).exists()
