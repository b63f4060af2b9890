"""An exclusive lock that one process holds at a time, and whether a process is still alive.

`FileLock` is a POSIX ``flock`` on a lock file (Linux ``flock(2)``). The kernel drops a flock when
the process holding it ends, however it ends (an exception, SIGTERM, SIGKILL, a power loss), so a
lock left by a crash never blocks the next run: there is no stale lock to clean up by hand. The file
holds the holder's pid, for messages, and is unlinked on release; a process that locked a file
that was unlinked meanwhile retries on the new one, so two processes never hold "the" lock at once.

Used for one build per dataset cache key (`uer.preprocess.build`) and one run per output directory
(`uer.train.lock`).
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def pid_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` exists on this machine (signal 0 probes without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class FileLock:
    """An exclusive ``flock`` on the file ``path`` (created if missing; its directory must exist)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.fd: int | None = None

    def holder(self) -> int | None:
        """The pid written in the lock file by its holder, or None (no file, not written yet)."""
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def acquire(self, block: bool = False) -> bool:
        """Take the lock. Without ``block``, returns False at once when another process holds it;
        with ``block``, waits for it (logging the holder's pid first). Returns True once held.

        Raises:
            OSError: the lock file cannot be created or opened (missing directory, no permission).
        """
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    if not block:
                        os.close(fd)
                        return False
                    log.info("waiting for process %s, which holds %s", self.holder() or "?", self.path)
                    fcntl.flock(fd, fcntl.LOCK_EX)
                if self._current(fd):
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()}\n".encode())
                    self.fd = fd
                    return True
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # the holder unlinked this file while we waited: lock the new one

    def _current(self, fd: int) -> bool:
        """Whether ``fd`` is still the file at ``self.path`` (not unlinked or replaced)."""
        try:
            here, there = os.fstat(fd), os.stat(self.path)
        except FileNotFoundError:
            return False
        return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)

    def release(self) -> None:
        """Unlink the lock file (if it is still ours) and drop the lock; a no-op when not held."""
        if self.fd is None:
            return
        if self._current(self.fd):
            self.path.unlink(missing_ok=True)
        os.close(self.fd)  # closing the last descriptor drops the flock
        self.fd = None

    def __enter__(self) -> FileLock:
        self.acquire(block=True)
        return self

    def __exit__(self, *exc) -> None:
        self.release()
