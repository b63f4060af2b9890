"""``uer-torchrun [torchrun options] -m uer.cli.pretrain ...``: torchrun, with the exit statuses of
the run it launches.

It takes exactly torchrun's arguments and launches the same way (``torch.distributed.run``); only
its ending differs. torchrun turns a SIGTERM it receives into its own ``SignalException``, stops the
workers (each writes the checkpoint of its last step and exits 143) and then exits 1 with a
traceback; a worker that fails with a one-line ``error: ...`` (exit 2) also makes torchrun exit 1,
with a traceback and a table of failures. uer-torchrun exits 143 (128 + the signal) after a signal,
once the workers are done, and with the first failed worker's status otherwise (2 for bad input),
adding one line that names the rank instead of the traceback: what a scheduler or a shell script
checks reads the same with one process or many.
"""
from __future__ import annotations

import signal
import sys


def exit_status(code: int) -> int:
    """A process exit code as a shell reports it: ``-N`` (killed by signal N) -> 128 + N."""
    return 128 - code if code < 0 else code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # lazy, deliberately: torch.distributed.run imports torch (seconds); --help of this module stays instant
    from torch.distributed.elastic.multiprocessing.api import SignalException  # lazy
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError  # lazy
    from torch.distributed.run import main as torchrun  # lazy

    try:
        torchrun(argv)
    except SignalException as e:
        name = signal.Signals(e.sigval).name
        print(f"uer-torchrun: stopped by {name}; the workers wrote their checkpoint (see above)", file=sys.stderr)
        return 128 + int(e.sigval)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        status = exit_status(failure.exitcode)
        print(f"uer-torchrun: rank {rank} (pid {failure.pid}) exited with status {status}", file=sys.stderr)
        return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
