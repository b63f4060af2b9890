"""Peak memory of a command and the processes it starts, sampled from ``/proc`` while it runs
(Linux): what ``/usr/bin/time -v`` reports for one process, summed over a process tree (workers,
torchrun's ranks)."""
from __future__ import annotations

import os
import subprocess
import threading
import time
from typing import NamedTuple


def tree_rss(root: int) -> tuple[int, int]:
    """Sums of (``RssAnon``, ``VmRSS``) in bytes over process ``root`` and its descendants (``/proc``)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    members, frontier = {root}, [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier and pid not in members]
        members.update(children)
        frontier = children
    anon = total = 0
    for pid in members:
        try:
            with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
                fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f
                          if line.startswith(("VmRSS:", "RssAnon:"))}
        except (OSError, ValueError):
            continue
        anon, total = anon + fields.get("RssAnon", 0), total + fields.get("VmRSS", 0)
    return anon, total


class Sampled(NamedTuple):
    """A finished command: exit status, captured output, wall seconds and the peak (over samples)
    of the tree's summed ``RssAnon`` and ``VmRSS``, in bytes."""
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_anon: int
    peak_rss: int


def run_sampled(command: list[str], env: dict[str, str], interval: float) -> Sampled:
    """Run ``command`` to the end, sampling :func:`tree_rss` every ``interval`` seconds."""
    peak, done = (0, 0), threading.Event()
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def sample() -> None:
        nonlocal peak
        while not done.wait(interval):
            peak = tuple(map(max, peak, tree_rss(child.pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = child.communicate()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return Sampled(child.returncode, out, err, seconds, *peak)
