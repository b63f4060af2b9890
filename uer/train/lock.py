"""One run per output directory: :func:`own_output_dir` holds an exclusive lock on
``<output_dir>/.lock`` (:class:`uer.preprocess.lock.FileLock`, a ``flock``) for the whole of
:meth:`uer.train.trainer.Trainer.fit`, so a second run on the same ``trainer.output_dir`` (pretraining
or a fine-tuning recipe) stops with one line instead of overwriting the first one's checkpoints.

The lock dies with its process (SIGKILL included), so a crashed run never blocks the next one. Under
torchrun rank 0 takes it and every rank learns the outcome (:func:`uer.train.distributed.agree`), so all
stop together. Which run created the directory is decided by one ``mkdir`` (atomic), so of two runs
started at the same moment on a new directory only the one that made it, and holds the lock, may
remove it again after failing before its first checkpoint.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from uer.errors import UerError
from uer.preprocess.lock import FileLock
from uer.train import distributed

LOCK_FILE = ".lock"


def _make_dir(directory: Path) -> bool:
    """Create ``directory`` (and its parents); True if this call created it."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        directory.mkdir()
    except FileExistsError:
        return False
    return True


def _take(directory: Path) -> tuple[FileLock, bool]:
    """Create ``directory`` if needed and lock it; returns the held lock and whether we created it.

    Raises:
        UerError: another process holds the lock, or the directory cannot be created or locked.
    """
    for _ in range(3):  # the directory may vanish under us once: a failed first run removing its own
        try:
            created = _make_dir(directory)
            lock = FileLock(directory / LOCK_FILE)
            if lock.acquire(block=False):
                return lock, created
        except FileNotFoundError:
            continue
        except OSError as e:
            raise UerError(f"trainer.output_dir={directory}: cannot be created or locked "
                           f"({type(e).__name__}: {e.strerror or e})") from None
        raise UerError(f"trainer.output_dir={directory} is in use by another run (pid {lock.holder() or '?'}); "
                       "wait for it to end or choose another trainer.output_dir")
    raise UerError(f"trainer.output_dir={directory}: keeps disappearing while it is being locked")


@contextlib.contextmanager
def own_output_dir(directory: str | os.PathLike) -> Iterator[bool]:
    """Hold the lock on ``directory`` (created if missing) for the ``with`` block; yields True on the
    rank that created the directory (rank 0), else False. Collective: every rank calls it.

    Raises:
        UerError: on every rank, when another process holds the lock (``trainer.output_dir=... is in
            use by another run (pid N)``) or the directory cannot be created; nothing is touched then.
    """
    lock, created, error = None, False, None
    if distributed.is_main():
        try:
            lock, created = _take(Path(directory))
        except UerError as e:
            error = str(e)
    try:
        distributed.agree(error)
        yield created
    finally:
        if lock is not None:
            lock.release()
